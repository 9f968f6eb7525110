"""The console's words in English and Korean; the language comes from the ``lang`` cookie
(the switch) or else the browser's Accept-Language."""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("en", "ko")
LANG_COOKIE = "nocode_console_lang"

# key -> (English, Korean)
MESSAGES: dict[str, tuple[str, str]] = {
    "app": ("Nocode AI console", "Nocode AI 콘솔"),
    "skip": ("Skip to content", "본문으로 건너뛰기"),
    "signin": ("Sign in", "로그인"),
    "signout": ("Sign out", "로그아웃"),
    "username": ("Username", "사용자 이름"),
    "password": ("Password", "비밀번호"),
    "bad_credentials": (
        "Invalid username or password.",
        "사용자 이름 또는 비밀번호가 올바르지 않습니다.",
    ),
    "too_many": (
        "Too many sign-in attempts; wait a moment.",
        "로그인 시도가 너무 많습니다. 잠시 후 다시 시도하세요.",
    ),
    "expired": (
        "Your session has expired. Please sign in again.",
        "세션이 만료되었습니다. 다시 로그인하세요.",
    ),
    "signed_out": ("You are signed out.", "로그아웃되었습니다."),
    "signed_in_as": ("Signed in as", "로그인 사용자"),
    "language": ("Language", "언어"),
    "nav": ("Main menu", "주 메뉴"),
    "my-requests": ("My requests", "내 요청"),
    "new-model-request": ("Request a model", "모델 생성 요청"),
    "new-target-request": ("Request a target", "타깃 추출 요청"),
    "notices": ("Notifications", "알림"),
    "inbox": ("Approval inbox", "승인함"),
    "users": ("Users and roles", "사용자와 권한"),
    "operations": ("Operations", "운영"),
    "not_found": ("Not found", "찾을 수 없음"),
    "not_found_text": (
        "There is no such page, or you may not open it.",
        "페이지가 없거나 열 권한이 없습니다.",
    ),
    "unavailable": (
        "The platform is not answering; try again shortly.",
        "플랫폼이 응답하지 않습니다. 잠시 후 다시 시도하세요.",
    ),
    "csrf": (
        "The form was stale or not from this console; nothing was changed.",
        "폼이 만료되었거나 이 콘솔의 폼이 아닙니다. 아무것도 바뀌지 않았습니다.",
    ),
    "kind": ("Kind", "종류"),
    "state": ("State", "상태"),
    "name": ("Name", "이름"),
    "progress": ("Progress", "진행률"),
    "created": ("Created", "생성"),
    "updated": ("Updated", "갱신"),
    "actions": ("Actions", "작업"),
    "all": ("All", "전체"),
    "model": ("Model", "모델"),
    "target": ("Target", "타깃"),
    "search": ("Search by name", "이름으로 검색"),
    "filter": ("Filter", "필터"),
    "none": ("Nothing here yet.", "아직 없습니다."),
    "previous": ("Previous", "이전"),
    "next": ("Next", "다음"),
    "page_of": (
        "Page {page} of {pages} ({total} in all)",
        "{pages}쪽 중 {page}쪽 (전체 {total}건)",
    ),
    "live": ("Live: updates as they happen", "실시간: 바뀌는 대로 갱신"),
    "offline": ("Live updates paused; reconnecting", "실시간 갱신 중단됨, 다시 연결 중"),
    "timeline": ("Timeline", "타임라인"),
    "cancel": ("Cancel", "취소"),
    "cancel_request": ("Cancel this request", "이 요청 취소"),
    "reason": ("Reason", "사유"),
    "cancel_explain_model": (
        "Cancelling stops the training at its next step. If the training finishes at the same"
        " moment, the completion is refused and the model stays cancelled; if the request has"
        " already completed, it cannot be cancelled any more. Targets waiting on this model are"
        " cancelled too.",
        "취소하면 학습이 다음 단계에서 멈춥니다. 같은 순간에 학습이 끝나더라도"
        " 완료는 거부되고 모델은 취소 상태로 남습니다."
        " 이미 완료된 요청은 더 이상 취소할 수 없습니다. 이 모델을 기다리는"
        " 타깃 요청도 함께 취소됩니다.",
    ),
    "cancel_explain_target": (
        "Cancelling stops the extraction at its next step and no LMS send goes out. If the"
        " extraction has already completed, it cannot be cancelled any more.",
        "취소하면 추출이 다음 단계에서 멈추고 LMS 발송이 나가지 않습니다. 이미 추출이 완료되었으면"
        " 더 이상 취소할 수 없습니다.",
    ),
    "confirm_cancel": ("Yes, cancel it", "예, 취소합니다"),
    "keep": ("Keep it", "유지"),
    "cancelled_ok": ("Request {id} is cancelled.", "요청 {id}이(가) 취소되었습니다."),
    "too_late": (
        "Too late: request {id} has already completed.",
        "너무 늦었습니다: 요청 {id}은(는) 이미 완료되었습니다.",
    ),
    "not_cancellable": (
        "Request {id} cannot be cancelled: {detail}",
        "요청 {id}을(를) 취소할 수 없습니다: {detail}",
    ),
    "model_name": ("Model name", "모델 이름"),
    "model_name_help": (
        "A name you will recognise, up to 255 characters.",
        "알아볼 수 있는 이름, 최대 255자.",
    ),
    "submit_request": ("Send request", "요청 보내기"),
    "requested_ok": (
        "Request {id} sent; it waits for an admin's approval.",
        "요청 {id}을(를) 보냈습니다. 관리자 승인을 기다립니다.",
    ),
    "target_type": ("Target type", "타깃 유형"),
    "target_type_help": (
        "Which audience to extract, e.g. churn-risk.",
        "추출할 대상, 예: churn-risk.",
    ),
    "source_model": ("Model (your completed ones)", "모델 (완료된 내 모델)"),
    "no_completed_models": (
        "You have no completed model yet: request one first.",
        "완료된 모델이 아직 없습니다. 먼저 모델을 요청하세요.",
    ),
    "form_error": ("Please correct the marked fields.", "표시된 항목을 고쳐 주세요."),
    "pending": ("Pending requests, oldest first", "대기 중인 요청, 오래된 순"),
    "age": ("Waiting", "대기 시간"),
    "requester": ("Requester", "요청자"),
    "model_state": ("Model state", "모델 상태"),
    "approve": ("Approve", "승인"),
    "reject": ("Reject", "반려"),
    "reject_reason": ("Reason for rejecting", "반려 사유"),
    "approved_ok": ("{id} approved.", "{id} 승인했습니다."),
    "rejected_ok": ("{id} rejected.", "{id} 반려했습니다."),
    "refused": ("{id}: {detail}", "{id}: {detail}"),
    "create_user": ("Create a user", "사용자 만들기"),
    "roles": ("Roles", "권한"),
    "status": ("Status", "상태"),
    "enabled": ("enabled", "사용 중"),
    "disabled": ("disabled", "사용 중지"),
    "disable": ("Disable", "사용 중지"),
    "enable": ("Enable", "다시 사용"),
    "grant": ("Grant {role}", "{role} 부여"),
    "revoke": ("Revoke {role}", "{role} 회수"),
    "new_password": ("New password", "새 비밀번호"),
    "reset_password": ("Reset password", "비밀번호 재설정"),
    "create": ("Create", "만들기"),
    "user_done": ("{user}: done.", "{user}: 완료."),
    "user_created": ("User {user} created.", "사용자 {user}을(를) 만들었습니다."),
    "jobs": ("Jobs", "작업"),
    "health": ("Health, as nocode status sees it", "상태 (nocode status 기준)"),
    "service": ("Service", "서비스"),
    "backlog": ("Outbox backlog", "아웃박스 적체"),
    "lag": ("Consumer lag", "컨슈머 지연"),
    "dead_lettered": ("Dead-lettered", "데드레터"),
    "problem": ("Problem", "문제"),
    "attempts": ("Attempts", "시도"),
    "step": ("Step", "단계"),
    "message": ("Message", "메시지"),
    "delivery": ("Delivery", "전달"),
    "sent_at": ("Sent", "발송"),
    "at": ("When", "시각"),
    "event": ("What happened", "일어난 일"),
    "actor": ("By", "주체"),
    "details": ("Details", "상세"),
    "lms_send": ("LMS send", "LMS 발송"),
    "send_id": ("MIDAS send id", "MIDAS 발송 ID"),
    "chat_messages": ("Chat messages", "채팅 메시지"),
    "request_of": ("{kind} request {id}", "{kind} 요청 {id}"),
    "minutes": ("{n} min", "{n}분"),
    "seconds": ("{n} s", "{n}초"),
    "hours": ("{n} h", "{n}시간"),
    "days": ("{n} d", "{n}일"),
    # timeline entry kinds
    "tl.state": ("State", "상태"),
    "tl.batch": ("Vertica batch", "Vertica 배치"),
    "tl.progress": ("Training step", "학습 단계"),
    "tl.check": ("Compensation check", "보상 확인"),
    "tl.job": ("Job", "작업"),
    "tl.lms": ("LMS send", "LMS 발송"),
    "tl.chat": ("Chat message", "채팅 메시지"),
    # timeline details
    "d.batch": (
        "batch {batch}: rows {offset} to {end} of {totalRows}",
        "배치 {batch}: 전체 {totalRows}행 중 {offset}~{end}행",
    ),
    "d.progress": (
        "step {step} of {totalSteps} ({progress}%)",
        "{totalSteps}단계 중 {step}단계 ({progress}%)",
    ),
    "d.check": (
        "outcome {outcome}; model said {modelState}; {tries} tries",
        "결과 {outcome}, 모델 상태 {modelState}, {tries}회 시도",
    ),
    "d.from": ("from {state}", "이전: {state}"),
    "d.job": ("job {id}", "작업 {id}"),
    "d.reason": ("reason: {reason}", "사유: {reason}"),
    # states
    "st.requested": ("requested", "요청됨"),
    "st.approved": ("approved", "승인됨"),
    "st.inProgress": ("in progress", "진행 중"),
    "st.completed": ("completed", "완료"),
    "st.failed": ("failed", "실패"),
    "st.rejected": ("rejected", "반려됨"),
    "st.cancelled": ("cancelled", "취소됨"),
    "st.sent": ("sent", "발송됨"),
    "st.pending": ("pending", "대기"),
}
STATE_KEYS = {
    "requestCanceled": "cancelled",
    "canceled": "cancelled",
    "targetCanceled": "cancelled",
    "targetCompleted": "completed",
}
FILTER_STATES = (
    "requested",
    "approved",
    "inProgress",
    "completed",
    "failed",
    "rejected",
    "cancelled",
)


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The cookie's language if it is one we speak, else the browser's best we speak."""
    if cookie in LANGUAGES:
        return cookie
    best, best_q = "en", -1.0
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower().split("-")[0]
        if lang in LANGUAGES and (q > best_q or (q == best_q and i == 0)):
            best, best_q = lang, q
    return best


def translator(lang: str) -> Callable[..., str]:
    index = LANGUAGES.index(lang) if lang in LANGUAGES else 0

    def t(key: str, **values: object) -> str:
        pair = MESSAGES.get(key)
        text = pair[index] if pair else key
        return text.format(**values) if values else text

    return t


def state_key(state: str | None) -> str:
    """A state's filter group and label key: every spelling of cancelled is one."""
    state = state or ""
    return STATE_KEYS.get(state, state)
