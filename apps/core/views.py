from dataclasses import asdict

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.core.health import run_checks


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 with every check when all pass, 503 when any fails."""
    results = run_checks()
    healthy = all(result.ok for result in results.values())
    body = {"status": "ok" if healthy else "fail", "checks": {k: asdict(v) for k, v in results.items()}}
    return JsonResponse(body, status=200 if healthy else 503)
