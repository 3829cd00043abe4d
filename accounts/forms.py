from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm, BaseUserCreationForm
from django.core.cache import cache

from accounts.models import ApiToken, SupportMessage, User


class SignupForm(BaseUserCreationForm):
    class Meta:
        model = User
        fields = ["email"]

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.cleaned_data["email"]).lower()
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError("An account with this e-mail address already exists.")
        return email


class ThrottledAuthenticationForm(AuthenticationForm):
    """Login form that refuses further attempts after repeated failures.

    Failures are counted per e-mail address and per client IP in the cache
    (Redis when REDIS_URL is set, so the count holds across processes).
    """

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed attempts. Try again in a few minutes.",
    }

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields["username"].widget.input_type = "email"

    def clean(self):
        email = (self.cleaned_data.get("username") or "").lower()
        keys = {
            f"login-failures:email:{email}": settings.LOGIN_FAILURES_PER_EMAIL,
            f"login-failures:ip:{self.request.META.get('REMOTE_ADDR', '')}": settings.LOGIN_FAILURES_PER_IP,
        }
        if any(cache.get(key, 0) >= limit for key, limit in keys.items()):
            raise forms.ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            cleaned_data = super().clean()
        except forms.ValidationError:
            for key in keys:
                cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW)
                cache.incr(key)
            raise
        cache.delete(f"login-failures:email:{email}")
        return cleaned_data


class TokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["name"]
        help_texts = {"name": "What the token is for, e.g. “production server”."}


class SupportForm(forms.ModelForm):
    class Meta:
        model = SupportMessage
        fields = ["subject", "message"]
        widgets = {"message": forms.Textarea(attrs={"rows": 6})}
