from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apps.llm.accounting.context import llm_context


class LLMContextMiddleware:
    """Attributes the LLM calls made while handling a request to the signed-in user."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        with llm_context(user=user if user is not None and user.is_authenticated else None):
            return self.get_response(request)
