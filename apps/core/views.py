import hmac
from dataclasses import asdict

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.core.health import run_checks


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when every check passes, 503 when any fails.

    Anyone gets ``ok``/``fail`` per check (what a load balancer needs); staff sessions and
    callers with ``HEALTH_TOKEN`` also get the details: versions, the broker, the queue depth.
    """
    results = run_checks()
    healthy = all(result.ok for result in results.values())
    if may_see_details(request):
        checks: dict[str, object] = {name: asdict(result) for name, result in results.items()}
    else:
        checks = {name: "ok" if result.ok else "fail" for name, result in results.items()}
    body = {"status": "ok" if healthy else "fail", "checks": checks}
    return JsonResponse(body, status=200 if healthy else 503)


def may_see_details(request: HttpRequest) -> bool:
    if token_matches(request):
        return True
    try:
        return bool(request.user.is_staff)
    except DatabaseError:  # the session's user cannot be read: the checks report why
        return False


def token_matches(request: HttpRequest) -> bool:
    """``Authorization: Bearer <HEALTH_TOKEN>`` or ``?token=<HEALTH_TOKEN>``, compared in constant time."""
    expected = settings.HEALTH_TOKEN
    if not expected:
        return False
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    given = credentials.strip() if scheme.lower() == "bearer" else request.GET.get("token", "")
    return hmac.compare_digest(given.encode(), expected.encode())
