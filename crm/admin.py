from django.contrib import admin, messages

from myhibachi.admin_site import BusinessAdmin, export_as_csv

from .merge import MergeRefused, merge_customers
from .models import Booking, Customer, CustomerIdentity, CustomerNote, Lead, LostReason, MarketingSpend, Payment


class CustomerIdentityInline(admin.StackedInline):  # stacked: each input has its label (axe)
    model = CustomerIdentity
    extra = 1
    fields = ("kind", "value", "is_primary")


class CustomerNoteInline(admin.StackedInline):
    """Staff notes about the customer, written from the thread's profile panel."""

    model = CustomerNote
    extra = 0
    fields = ("body", "author", "created_at")
    readonly_fields = ("author", "created_at")

    def has_add_permission(self, request, obj=None):
        return False  # written in the inbox, where the author is who is signed in


@admin.register(Customer)
class CustomerAdmin(BusinessAdmin):
    list_display = ("name", "primary_identity", "preferred_channel", "created_at")
    list_filter = ("preferred_channel", "created_at")
    search_fields = ("first_name", "last_name", "identities__value")
    date_hierarchy = "created_at"
    inlines = [CustomerIdentityInline, CustomerNoteInline]
    actions = [export_as_csv, "merge_into_oldest"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("identities")

    @admin.action(description="Merge the selected customers into the oldest of them", permissions=["change"])
    def merge_into_oldest(self, request, queryset):
        """The same service as POST /api/v1/customers/{id}/merge (crm/merge.py), once per merged customer."""
        chosen = list(queryset.order_by("pk"))
        if len(chosen) < 2:
            self.message_user(request, "Select at least two customers to merge.", messages.WARNING)
            return
        into = chosen[0]
        try:
            for source in chosen[1:]:
                merge_customers(source=source, into=into, by=request.user)
        except (MergeRefused, Customer.DoesNotExist) as exc:
            self.message_user(request, f"Not merged: {' '.join(getattr(exc, 'messages', [str(exc)]))}", messages.ERROR)
            return
        self.message_user(request, f"Merged {len(chosen) - 1} customer(s) into {into.name} (#{into.pk}).",
                          messages.SUCCESS)

    @admin.display(description="Email / phone")
    def primary_identity(self, obj):
        identities = sorted(obj.identities.all(), key=lambda i: (not i.is_primary, i.kind))
        return identities[0].value if identities else "—"


@admin.register(CustomerIdentity)
class CustomerIdentityAdmin(BusinessAdmin):
    list_display = ("value", "kind", "customer", "is_primary", "created_at")
    list_filter = ("kind", "is_primary")
    search_fields = ("value", "customer__first_name", "customer__last_name")
    list_select_related = ("customer",)
    autocomplete_fields = ("customer",)
    actions = [export_as_csv]


def _booking_status_action(status):
    def action(modeladmin, request, queryset):
        count = 0
        for booking in queryset:
            booking.status = status
            booking.save()  # stamps the time the step was first reached
            count += 1
        modeladmin.message_user(request, f"Set {count} booking(s) to {status}.", messages.SUCCESS)

    action.__name__ = f"booking_{status}"
    action.short_description = f"Set status: {status}"
    return action


class PaymentInline(admin.TabularInline):
    model = Payment
    extra = 0
    fields = ("kind", "amount", "paid_at", "method")


@admin.register(Booking)
class BookingAdmin(BusinessAdmin):
    list_display = ("customer", "event_at", "guest_count", "status", "event_type", "location", "total", "deposit",
                    "source", "lost_reason")
    list_filter = ("status", "source", "event_type", "lost_reason", "event_at")
    inlines = [PaymentInline]
    search_fields = ("customer__first_name", "customer__last_name", "customer__identities__value")
    date_hierarchy = "event_at"
    list_select_related = ("customer",)
    autocomplete_fields = ("customer",)
    # "Lost" needs a reason, so it is set on the booking's own page, not in bulk.
    actions = [_booking_status_action(s) for s in Booking.Status.values if s != Booking.Status.LOST] + [export_as_csv]


@admin.register(Lead)
class LeadAdmin(BusinessAdmin):
    list_display = ("id", "source", "status", "lost_reason", "customer", "booking", "created_at")
    list_filter = ("source", "status", "lost_reason", "created_at")
    search_fields = ("customer__first_name", "customer__last_name")
    date_hierarchy = "created_at"
    list_select_related = ("customer", "booking")
    autocomplete_fields = ("customer", "booking")
    actions = [export_as_csv]


@admin.register(MarketingSpend)
class MarketingSpendAdmin(BusinessAdmin):
    list_display = ("month", "source", "amount")
    list_filter = ("source",)
    date_hierarchy = "month"
    actions = [export_as_csv]


@admin.register(LostReason)
class LostReasonAdmin(BusinessAdmin):
    list_display = ("name", "slug", "order", "is_active")
    list_editable = ("order", "is_active")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Payment)
class PaymentAdmin(BusinessAdmin):
    list_display = ("booking", "kind", "amount", "method", "paid_at")
    list_filter = ("kind", "method", "paid_at")
    date_hierarchy = "paid_at"
    list_select_related = ("booking__customer",)
    autocomplete_fields = ("booking",)
    actions = [export_as_csv]
