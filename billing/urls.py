from django.urls import path

from billing import views

urlpatterns = [
    path("billing/", views.billing_page, name="billing"),
    path("billing/plans/<slug:slug>/", views.choose_plan, name="choose_plan"),
    path("billing/plans/<slug:slug>/confirm/", views.confirm_plan, name="confirm_plan"),
    path("billing/portal/", views.portal, name="billing_portal"),
    path("billing/alerts/", views.quota_alerts, name="quota_alerts"),
    path("stripe/webhook", views.stripe_webhook, name="stripe_webhook"),
]
