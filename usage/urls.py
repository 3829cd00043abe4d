from django.urls import path

from usage import views

urlpatterns = [
    path("forward-auth", views.forward_auth, name="forward_auth"),
    path("forward-auth/release", views.release_lease, name="release_lease"),
    path("usage/quantities", views.report_quantities, name="report_quantities"),
]
