from django.urls import path

from usage import endpoints, views

urlpatterns = [
    path("forward-auth", endpoints.forward_auth, name="forward_auth"),
    path("forward-auth/release", endpoints.release_lease, name="release_lease"),
    path("usage/quantities", endpoints.report_quantities, name="report_quantities"),
    path("usage/", views.usage_page, name="usage"),
    path("usage/export.csv", views.usage_csv, name="usage_csv"),
    path("staff/usage/", views.usage_overview, name="usage_overview"),
    path("staff/usage/<int:organization_id>/", views.customer_usage_page, name="customer_usage"),
    path("staff/usage/<int:organization_id>/export.csv", views.customer_usage_csv, name="customer_usage_csv"),
]
