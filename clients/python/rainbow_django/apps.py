from django.apps import AppConfig


class RainbowConfig(AppConfig):
    name = "rainbow_django"
    verbose_name = "Rainbow"

    def ready(self):
        # import every app's rainbow.py now, so an error there shows at start
        from rainbow_django import discover_handlers
        discover_handlers()
