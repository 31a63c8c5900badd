from oauth2_provider.oauth2_validators import OAuth2Validator


class Validator(OAuth2Validator):
    """The claims a company provider sends: email, username, groups, and `amr`."""

    # A claim missing from this map is dropped from the tokens.
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "profile", "amr": "openid"}

    def get_additional_claims(self, request):
        user = request.user
        names = set(user.groups.values_list("name", flat=True))
        return {
            "email": user.email,
            "email_verified": True,
            "preferred_username": user.username,
            "name": user.get_full_name() or user.username,
            "groups": sorted(name for name in names if not name.startswith("amr:")),
            # Members of the group "amr:mfa" signed in with a second factor at the provider.
            "amr": ["pwd", "mfa"] if "amr:mfa" in names else ["pwd"],
        }
