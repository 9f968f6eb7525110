"""Console settings, read from the environment (``CONSOLE_*`` plus the shared ones)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from servicekit.settings import ServiceSettings


class ConsoleSettings(ServiceSettings):
    service_name: str = "console"
    port: int = Field(8087, validation_alias="CONSOLE_PORT")
    # The API the console calls with each user's token; by default this machine's gateway
    # on GATEWAY_PORT, which `nocode up` passes to every process.
    gateway_url: str = Field("", validation_alias="CONSOLE_GATEWAY_URL")
    gateway_port: int = Field(8080, validation_alias="GATEWAY_PORT")
    gateway_timeout_s: float = Field(10.0, gt=0, validation_alias="CONSOLE_GATEWAY_TIMEOUT_S")
    # Sessions live in this process's memory: a restart signs everyone out.
    session_idle_s: int = Field(8 * 3600, gt=0, validation_alias="CONSOLE_SESSION_IDLE_S")
    cookie_secure: Literal["auto", "always", "never"] = Field(
        "auto", validation_alias="CONSOLE_COOKIE_SECURE"
    )  # auto: Secure when the browser came over https (X-Forwarded-Proto from the gateway)
    # How often a page's live stream asks the API for changes, and its heartbeat.
    live_poll_s: float = Field(1.0, gt=0, validation_alias="CONSOLE_LIVE_POLL_S")
    live_heartbeat_s: float = Field(15.0, gt=0, validation_alias="CONSOLE_LIVE_HEARTBEAT_S")
    live_max_s: float = Field(60.0, gt=0, validation_alias="CONSOLE_LIVE_MAX_S")  # then reconnect
    page_size: int = Field(20, ge=1, le=200, validation_alias="CONSOLE_PAGE_SIZE")
    # The operations page's health: service name -> base URL, as `nocode status` probes
    # them; empty: the launcher's ports on this machine (NAME_PORT, else the default).
    service_urls: dict[str, str] = Field(
        default_factory=dict, validation_alias="CONSOLE_SERVICE_URLS"
    )

    @model_validator(mode="after")
    def _default_gateway(self) -> ConsoleSettings:
        if not self.gateway_url:
            self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        self.gateway_url = self.gateway_url.rstrip("/")
        return self
