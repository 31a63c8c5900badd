from django import forms


class AddressForm(forms.Form):
    address = forms.CharField(label="Website address", max_length=253,
                              widget=forms.TextInput(attrs={
                                  "autocomplete": "url", "inputmode": "url",
                                  "placeholder": "example.org", "autocapitalize": "none"}))


class CodeForm(forms.Form):
    code = forms.CharField(label="Code", max_length=20, widget=forms.TextInput(attrs={
        "autocomplete": "one-time-code", "inputmode": "numeric"}))
