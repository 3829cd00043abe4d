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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["alert_thresholds"] = ", ".join(str(t) for t in self.instance.alert_thresholds)
        if not self.instance.plan.metered:
            del self.fields["words_alert_quota"]
        else:
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
