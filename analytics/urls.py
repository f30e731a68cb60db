from django.urls import path

from . import api, metrics

urlpatterns = [path(name, api.view_for(name), name=f"api-analytics-{name}") for name in metrics.METRICS]
