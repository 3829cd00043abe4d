from decimal import Decimal

from django import forms
from django.core.validators import MinValueValidator

from billing.models import Customer

MAX_THRESHOLDS = 5


class QuotaAlertsForm(forms.ModelForm):
    """The customer's alert thresholds (percent of the period's quotas) and, on pay-as-you-go, words budget."""

    alert_thresholds = forms.CharField(
        label="Alert me at (% of the quota)",
        required=False,
        help_text="Whole percentages from 1 to 100, separated by commas, e.g. 80, 100. Empty: no alerts.",
    )

    class Meta:
        model = Customer
        fields = ["alert_thresholds", "words_alert_quota"]
        labels = {"words_alert_quota": "Words per billing period to alert against"}
        help_texts = {"words_alert_quota": "Pay-as-you-go words are billed as used; empty: no word alerts."}

    spend_cap = forms.DecimalField(
        label="Spend cap per billing period ($)",
        required=False,
        max_digits=9,
        decimal_places=2,
        help_text="Pay-as-you-go: once this period's words cost this much, calls are refused until the next period "
        "or a higher cap (checked every 5 minutes). Empty: no cap.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["alert_thresholds"] = ", ".join(str(t) for t in self.instance.alert_thresholds)
        if not self.instance.plan.metered:
            del self.fields["words_alert_quota"]
            del self.fields["spend_cap"]
        else:
            cap = self.instance.spend_cap_cents
            self.initial["spend_cap"] = None if cap is None else Decimal(cap).scaleb(-2)
            self.fields["spend_cap"].widget.attrs["min"] = "0.01"
            words = self.fields["words_alert_quota"]
            words.validators.append(MinValueValidator(1))
            words.widget.attrs["min"] = 1

    def clean_alert_thresholds(self) -> list[int]:
        parts = [part.strip().rstrip("%").strip() for part in self.cleaned_data["alert_thresholds"].split(",")]
        parts = [part for part in parts if part]
        if not all(part.isdigit() and 1 <= int(part) <= 100 for part in parts):
            raise forms.ValidationError("Each threshold is a whole percentage from 1 to 100.")
        thresholds = sorted({int(part) for part in parts})
        if len(thresholds) > MAX_THRESHOLDS:
            raise forms.ValidationError(f"At most {MAX_THRESHOLDS} thresholds.")
        return thresholds

    def clean_spend_cap(self) -> Decimal | None:
        cap = self.cleaned_data["spend_cap"]
        if cap is not None and cap <= 0:
            raise forms.ValidationError("A spend cap is a positive amount; leave it empty for no cap.")
        return cap

    def save(self, commit: bool = True):
        if "spend_cap" in self.fields:
            cap = self.cleaned_data["spend_cap"]
            self.instance.spend_cap_cents = None if cap is None else int(cap * 100)
        return super().save(commit)
