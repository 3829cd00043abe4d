from django.contrib import admin
from django.urls import include, path

from backoffice import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("signup/", views.signup, name="signup"),
    path("", include("accounts.urls")),
    path("", include("usage.urls")),
    path("", include("billing.urls")),
    path("admin/", admin.site.urls),
]

handler400 = views.bad_request
handler403 = views.permission_denied
handler404 = views.page_not_found
handler500 = views.server_error
