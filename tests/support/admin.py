"""A Django test client for the staff admin that runs reason-asking admin actions."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse


class AdminClient(Client):
    def action(self, model: str, action: str, objects, *, confirm: bool = True, **form):
        """Run a reason-asking admin action on `objects` of `model` ("app_label.model").

        The first POST must render the confirmation page; with `confirm` the form is
        submitted (reason and any other fields from `form`). Returns the last response.
        """
        url = reverse(f"admin:{model.replace('.', '_')}_changelist")
        ids = [str(obj.pk) for obj in objects]
        page = self.post(url, {"action": action, "_selected_action": ids})
        assert page.status_code == 200, page.status_code
        assert b'name="confirm"' in page.content and b'name="reason"' in page.content, page.content[
            :500
        ]
        if not confirm:
            return page
        return self.post(url, {"action": action, "_selected_action": ids, "confirm": "yes", **form})
