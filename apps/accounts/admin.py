from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from apps.accounts.models import ProviderIdentity, User


class ProviderIdentityInline(admin.TabularInline):
    """Who the person is at the identity provider; made by their sign-ins, never by hand."""

    model = ProviderIdentity
    extra = 0
    can_delete = True  # unlinks: their next sign-in makes (or, by e-mail, links) an account
    readonly_fields = ("issuer", "subject", "created", "last_sign_in")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "affiliation", "is_staff", "is_active")
    list_filter = ("affiliation", "is_staff", "is_active")
    fieldsets = DjangoUserAdmin.fieldsets + (("Anvil", {"fields": ("affiliation",)}),)
    add_fieldsets = DjangoUserAdmin.add_fieldsets + (("Anvil", {"fields": ("affiliation",)}),)
    inlines = [ProviderIdentityInline]
