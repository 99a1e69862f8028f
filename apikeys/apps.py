from django.apps import AppConfig


class ApiKeysConfig(AppConfig):
    name = "apikeys"
    verbose_name = "API keys"

    def ready(self):
        from django.db.models.signals import post_delete
        from django.utils import timezone

        from accounts.signals import user_status_changed
        from apikeys import services
        from apikeys.models import ApiKey

        # Any key removal is immediate: a deleted key's cached auth context is dropped after
        # commit (the admin offers revoke, but an org's deletion cascades to its keys).
        def key_deleted(sender, instance, **kwargs):
            services.api_key_deleted(key=instance, now=timezone.now())

        # A disabled customer user's keys are refused on the next request (accounts.privileges).
        def creator_status_changed(sender, user, **kwargs):
            services.api_keys_of_creator_changed(user_id=user.pk)

        # weak=False: the receivers are local to this method.
        post_delete.connect(
            key_deleted, sender=ApiKey, weak=False, dispatch_uid="apikeys.key_deleted"
        )
        user_status_changed.connect(
            creator_status_changed, weak=False, dispatch_uid="apikeys.creator_status_changed"
        )
