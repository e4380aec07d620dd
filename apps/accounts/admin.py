from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from apps.accounts.models import User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "affiliation", "is_staff", "is_active")
    list_filter = ("affiliation", "is_staff", "is_active")
    fieldsets = DjangoUserAdmin.fieldsets + (("Anvil", {"fields": ("affiliation",)}),)
    add_fieldsets = DjangoUserAdmin.add_fieldsets + (("Anvil", {"fields": ("affiliation",)}),)
