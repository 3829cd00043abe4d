from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import organization_views, views
from accounts.forms import PasswordChangeForm, PasswordResetForm, SetPasswordForm, ThrottledAuthenticationForm

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm, redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", views.account, name="account"),
    path(
        "account/password/",
        auth_views.PasswordChangeView.as_view(form_class=PasswordChangeForm),
        name="password_change",
    ),
    path("account/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("password-reset/", auth_views.PasswordResetView.as_view(form_class=PasswordResetForm), name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(form_class=SetPasswordForm),
        name="password_reset_confirm",
    ),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("support/", views.support, name="support"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:token_id>/rotate/", views.rotate_token, name="rotate_token"),
    path("tokens/<int:token_id>/revoke/", views.revoke_token, name="revoke_token"),
    path("tokens/<int:token_id>/restrictions/", views.token_restrictions, name="token_restrictions"),
    path("organization/", organization_views.organization, name="organization"),
    path("organization/invite/", organization_views.invite, name="invite"),
    path(
        "organization/invitations/<int:invitation_id>/cancel/",
        organization_views.cancel_invitation,
        name="cancel_invitation",
    ),
    path("organization/members/<int:membership_id>/role/", organization_views.change_role, name="change_role"),
    path("organization/members/<int:membership_id>/remove/", organization_views.remove_member, name="remove_member"),
    path("organization/leave/", organization_views.leave, name="leave_organization"),
    path("organization/audit/", organization_views.audit_log, name="audit_log"),
    path("organizations/", organization_views.organizations, name="organizations"),
    path("organizations/switch/", organization_views.switch, name="switch_organization"),
    path("invitations/<str:token>/", organization_views.invitation, name="invitation"),
]
