"""Test-only URLconf: the Portal's URLs plus a one-time login link for a headless browser.

Used only by tests that set ROOT_URLCONF to this module; production never routes here.
"""

from django.contrib.auth import get_user_model, login
from django.http import Http404, HttpResponseRedirect
from django.urls import path
from django.utils.http import url_has_allowed_host_and_scheme

from portal.urls import urlpatterns as portal_urlpatterns

# token -> user id, filled by the test, each usable once.
LOGIN_TOKENS: dict[str, int] = {}


def login_link(request, token: str):
    user_id = LOGIN_TOKENS.pop(token, None)
    if user_id is None:
        raise Http404
    login(
        request,
        get_user_model().objects.get(pk=user_id),
        backend="django.contrib.auth.backends.ModelBackend",
    )
    target = request.GET.get("next", "/admin/")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = "/admin/"
    return HttpResponseRedirect(target)


urlpatterns = [path("__test__/login/<str:token>", login_link), *portal_urlpatterns]
