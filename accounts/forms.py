import ipaddress
import re
from contextlib import suppress

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.forms import AuthenticationForm, BaseUserCreationForm
from django.core.cache import cache
from django.utils import timezone

from accounts.models import (
    ApiToken,
    Invitation,
    Membership,
    Organization,
    SupportMessage,
    User,
    endpoint_pattern,
    network,
)
from core.proxy import client_ip


class PasswordRulesUnderPassword:
    """Django puts a password its validators refuse (too short, too common) under the confirmation field;
    those errors are about the password, so they go under it. A mismatch stays under the confirmation."""

    PASSWORD_FIELD = {"password2": "password1", "new_password2": "new_password1"}

    def validate_password_for_user(self, user, password_field_name="password2"):
        super().validate_password_for_user(user, self.PASSWORD_FIELD[password_field_name])


class SignupForm(PasswordRulesUnderPassword, BaseUserCreationForm):
    class Meta:
        model = User
        fields = ["email"]

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.cleaned_data["email"]).lower()
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError("An account with this e-mail address already exists.")
        return email


class PasswordChangeForm(PasswordRulesUnderPassword, auth_forms.PasswordChangeForm):
    pass


class SetPasswordForm(PasswordRulesUnderPassword, auth_forms.SetPasswordForm):
    pass


class PasswordResetForm(auth_forms.PasswordResetForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].label = "E-mail address"  # as on the other forms (the user model's field)


class LoginThrottleMixin:
    """Refuses a login, before its password is checked, once its client has failed too often.

    Each attempt first takes a number in two counters of the cache (Redis when
    REDIS_URL is set, so they hold across processes): its client IP's and its
    (e-mail, client IP) pair's. The increment is atomic, so concurrent attempts
    cannot all slip under the limit; a failure keeps its number, a success gives
    it back. No counter is per e-mail alone: that would let anyone lock any
    customer out, from anywhere (README, "Login throttling").
    """

    def clean(self) -> dict:
        email = (self.cleaned_data.get("username") or "").lower()
        if not email or not self.cleaned_data.get("password"):
            return super().clean()  # a field error: no password is checked
        network = throttled_network(client_ip(self.request))
        per_ip = f"login-attempts:ip:{network}"
        per_email = f"login-attempts:email:{email}:ip:{network}"
        ip_attempt, email_attempt = take_attempt(per_ip), take_attempt(per_email)
        if ip_attempt > settings.LOGIN_FAILURES_PER_IP or email_attempt > settings.LOGIN_FAILURES_PER_EMAIL:
            raise forms.ValidationError("Too many failed attempts. Try again in a few minutes.", code="throttled")
        cleaned_data = super().clean()  # a wrong password raises: the attempt stays counted
        cache.delete(per_email)
        with suppress(ValueError):  # ValueError: the window has ended meanwhile
            cache.decr(per_ip)  # only this success: other failures from that address still count
        return cleaned_data


def throttled_network(ip: str) -> str:
    """IPv4 clients are counted per address, IPv6 ones per /64: a single subscriber has a whole /64."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    return str(ipaddress.ip_network(f"{address}/64", strict=False) if address.version == 6 else address)


def take_attempt(key: str) -> int:
    """This attempt's number in the key's window: an atomic increment, distinct for concurrent attempts."""
    cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW)
    try:
        number = cache.incr(key)
    except ValueError:  # the window ended between add and incr
        return take_attempt(key)
    if number == 1:
        # The window starts now. Setting its end here also mends a key that expired between the
        # EXISTS and INCR of Django's Redis incr, which recreates it without a timeout.
        cache.touch(key, settings.LOGIN_FAILURE_WINDOW)
    return number


class ThrottledAuthenticationForm(LoginThrottleMixin, AuthenticationForm):
    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields["username"].widget.input_type = "email"


class StaffAuthenticationForm(LoginThrottleMixin, AdminAuthenticationForm):
    """Django admin's login form, under the same throttle (and counters) as /login/."""


class ListField(forms.CharField):
    """A list written on one line, its items separated by commas or spaces."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value) -> list[str]:
        return [item for item in re.split(r"[\s,]+", value or "") if item]

    def run_validators(self, value):
        pass  # each item is validated by the form's clean_<field>, naming the item at fault


class TokenRestrictionsForm(forms.ModelForm):
    """A token's restrictions (forward-auth checks them on every call): on creation, and editable later."""

    allowed_endpoints = ListField(
        required=False,
        label="Allowed endpoints",
        help_text=ApiToken._meta.get_field("allowed_endpoints").help_text,
        widget=forms.TextInput(attrs={"placeholder": "/v1/*/entities, /v1/en/summarization"}),
    )
    allowed_networks = ListField(
        required=False,
        label="Allowed client networks",
        help_text=ApiToken._meta.get_field("allowed_networks").help_text,
        widget=forms.TextInput(attrs={"placeholder": "203.0.113.0/24, 2001:db8::/32"}),
    )
    per_minute = forms.IntegerField(
        required=False,
        min_value=1,  # the model field's form field would say "0 or more" to a negative number
        label="Calls per minute",
        help_text=ApiToken._meta.get_field("per_minute").help_text,
    )

    class Meta:
        model = ApiToken
        fields = ["allowed_endpoints", "allowed_networks", "expires_on", "per_minute"]
        labels = {"expires_on": "Expires after"}
        widgets = {"expires_on": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")}

    def clean_allowed_endpoints(self) -> list[str]:
        patterns = self.cleaned_data["allowed_endpoints"]
        for pattern in patterns:
            if "**" in pattern:
                raise forms.ValidationError(f"“{pattern}”: use one * per path segment.")
            try:
                endpoint_pattern(pattern)
            except forms.ValidationError as error:
                raise forms.ValidationError(f"“{pattern}” is not an endpoint. {error.messages[0]}") from None
        return list(dict.fromkeys(patterns))

    def clean_allowed_networks(self) -> list[str]:
        networks = []
        for value in self.cleaned_data["allowed_networks"]:
            try:
                networks.append(str(network(value)))  # normal form: 203.0.113.7/24 is 203.0.113.0/24
            except ValueError:
                raise forms.ValidationError(
                    f"“{value}” is not a network: write it like 203.0.113.0/24, 2001:db8::/32 or one address."
                ) from None
        return list(dict.fromkeys(networks))

    def clean_expires_on(self):
        expires_on = self.cleaned_data["expires_on"]
        # Checked when set or changed: a token that expired may still get its other restrictions edited.
        if expires_on and "expires_on" in self.changed_data and expires_on < timezone.now().date():
            raise forms.ValidationError("The expiry date is in the past: pick today or a later day.")
        return expires_on


class TokenForm(TokenRestrictionsForm):
    class Meta(TokenRestrictionsForm.Meta):
        fields = ["name", *TokenRestrictionsForm.Meta.fields]
        help_texts = {"name": "What the token is for, e.g. “production server”."}


class SupportForm(forms.ModelForm):
    class Meta:
        model = SupportMessage
        fields = ["subject", "message"]
        widgets = {"message": forms.Textarea(attrs={"rows": 6})}


class OrganizationForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = ["name"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the organization a name.")
        return name


class InvitationForm(forms.ModelForm):
    """An owner invites someone by e-mail, with a role."""

    class Meta:
        model = Invitation
        fields = ["email", "role"]

    def __init__(self, *args, organization: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.cleaned_data["email"]).lower()
        if self.organization.members.filter(email=email).exists():
            raise forms.ValidationError(f"{email} is already a member of {self.organization}.")
        return email


class RoleForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["role"]
