from django import forms

from review.models import Review
from review.services import MAX_NOTES


class ReviewForm(forms.Form):
    outcome = forms.ChoiceField(label="Outcome", widget=forms.RadioSelect)
    notes = forms.CharField(label="Notes", required=False, max_length=MAX_NOTES,
                            widget=forms.Textarea(attrs={"rows": 4}),
                            help_text="What happened, and what should change.")
    postmortem_url = forms.URLField(label="Post-mortem link", required=False, max_length=500,
                                    assume_scheme="https")

    def __init__(self, review: Review, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if review.is_drill:
            choices = [(Review.Outcome.DRILL, "Drill (what it found goes in the notes)")]
        else:
            choices = [(Review.Outcome.JUSTIFIED, "Justified"),
                       (Review.Outcome.NOT_JUSTIFIED, "Not justified")]
        self.fields["outcome"].choices = choices
