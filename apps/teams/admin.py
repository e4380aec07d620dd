from __future__ import annotations

from django.contrib import admin

from apps.teams.models import Membership, Team
from apps.teams.services import membership_create, membership_delete, membership_role_change


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ("user",)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "created")
    search_fields = ("name",)
    inlines = [MembershipInline]

    def save_formset(self, request, form, formset, change) -> None:
        """Members join and leave through the membership services: a newcomer gets the grants'
        collective limits, someone removed loses their API keys in the team's grants."""
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        formset.save(commit=False)
        actor = request.user
        for membership in formset.deleted_objects:
            membership_delete(membership=membership, actor=actor)
        for membership, fields in formset.changed_objects:
            if "user" in fields:  # another person in this row: one leaves, one joins
                membership_delete(membership=Membership.objects.get(pk=membership.pk), actor=actor)
                membership_create(
                    team=form.instance, user=membership.user, role=membership.role, actor=actor
                )
            else:
                membership_role_change(membership=membership, role=membership.role, actor=actor)
        for membership in formset.new_objects:
            membership_create(
                team=form.instance, user=membership.user, role=membership.role, actor=actor
            )
