"""Typed keys for what the identity routes keep on the app (set by gateway.auth_routes)."""

from __future__ import annotations

from aiohttp import web

from gateway.menus import MenuCatalogue
from gateway.passwords import Passwords
from gateway.rate_limit import RateLimiter
from gateway.sessions import SessionStore
from gateway.users import UserStore
from servicekit.auth import TokenIssuer

USER_STORE = web.AppKey("gateway.user_store", UserStore)
PASSWORDS = web.AppKey("gateway.passwords", Passwords)
TOKEN_ISSUER = web.AppKey("gateway.token_issuer", TokenIssuer)
MENUS = web.AppKey("gateway.menus", MenuCatalogue)
SESSIONS = web.AppKey("gateway.sessions", SessionStore)
LOGIN_USER_LIMITER = web.AppKey("gateway.login_user_limiter", RateLimiter)
