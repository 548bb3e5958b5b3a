"""The HTTP API, split by concern: plan.py (listen and token policy), auth.py (middleware),
query.py (parameters), ranges.py (audio with Range), events.py (SSE and WebSocket),
api.py (the aiohttp app), routes.py (route table and OpenAPI), body.py, metrics.py, errors.py.

The names callers need are re-exported here.
"""

from dgx_music.daemon.http.api import HttpApi, start
from dgx_music.daemon.http.plan import HttpPlan, is_loopback, parse_listen, plan, read_token
from dgx_music.daemon.http.routes import openapi

__all__ = ["HttpApi", "HttpPlan", "is_loopback", "openapi", "parse_listen", "plan", "read_token", "start"]
