from django.contrib import admin
from django.urls import include, path

from backoffice import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("", include("accounts.urls")),
    path("", include("usage.urls")),
    path("", include("billing.urls")),
    path("admin/", admin.site.urls),
]
