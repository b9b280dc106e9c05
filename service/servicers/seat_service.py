"""seats.v1.SeatService: parse -> domain -> reply."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
from seats.v1 import resources_pb2 as r
from seats.v1 import seat_service_pb2 as pb
from seats.v1 import seat_service_pb2_grpc as pb_grpc

from ..domain.errors import ErrorReason, Kind, SeatError, invalid, reason
from ..domain.model import Hub, RequestState
from ..domain.seats import MAX_KEPT_CHECK, POLICY_FIELDS, NewAccount, SeatDomain, check_count
from ..events import EventHub, WatchSlots
from .common import (
    SYSTEM_SCOPE,
    Replay,
    Replies,
    account_pb,
    assignment_pb,
    call_of,
    charge_pb,
    event_pb,
    from_ts,
    hub_of,
    invoice_pb,
    micros_of,
    money,
    pool_pb,
    req_hub,
    req_tier,
    rpc,
    seat_request_pb,
    stream_rpc,
    tier_of,
    ts,
)

WATCH_BATCH = 100
HUBS = {int(h): h for h in Hub}  # a report's hub without an enum call (hub_of explains a bad one)


class SeatServicer(pb_grpc.SeatServiceServicer):
    def __init__(
        self,
        domain: SeatDomain,
        replay: Replay,
        hub: EventHub,
        *,
        watch_poll_seconds: float,
        max_watch_streams: int,
        max_watch_streams_per_account: int,
        watch_max_seconds: float,
    ) -> None:
        if watch_max_seconds <= 0:
            raise ValueError("--watch-max-seconds must be positive")
        self.domain = domain
        self.replay = replay
        self.hub = hub
        self.watch_poll_seconds = watch_poll_seconds
        self.watch_max_seconds = watch_max_seconds
        # A watch holds a handler thread for its whole life: cap them so unary calls keep
        # threads, and per account so that one tenant cannot take every slot.
        self.watch_slots = WatchSlots(max_watch_streams, max_watch_streams_per_account)
        self.mpu = domain.prices.minor_per_unit
        self._replies = Replies()

    @rpc
    def CreateAccount(
        self, request: pb.CreateAccountRequest, context: grpc.ServicerContext
    ) -> pb.CreateAccountResponse:
        call = call_of(context, request.request_id)
        check_count("subscriptions", len(request.subscriptions), "subscriptions")
        subs = [
            (req_hub(s.hub, f"subscriptions[{i}].hub"), req_tier(s.tier, f"subscriptions[{i}].tier"), s.purchased_seats)
            for i, s in enumerate(request.subscriptions)
        ]
        spec = NewAccount(
            request.display_name,
            request.owner_email,
            request.owner_display_name,
            subs,
            request.term_months,
            from_ts(request.term_start, "term_start") if request.HasField("term_start") else None,
        )

        def compute() -> pb.CreateAccountResponse:
            view, charges = self.domain.create_account(call, spec)
            return pb.CreateAccountResponse(account=account_pb(view), charges=[charge_pb(c, self.mpu) for c in charges])

        return self.replay.run(call, SYSTEM_SCOPE, "CreateAccount", request, pb.CreateAccountResponse, compute)

    @rpc
    def GetAccount(self, request: pb.GetAccountRequest, context: grpc.ServicerContext) -> pb.GetAccountResponse:
        view = self.domain.get_account(call_of(context), request.account_id)
        return self._replies.get("GetAccount", view, lambda: pb.GetAccountResponse(account=account_pb(view)))

    @rpc
    def GetSeatSummary(
        self, request: pb.GetSeatSummaryRequest, context: grpc.ServicerContext
    ) -> pb.GetSeatSummaryResponse:
        summary = self.domain.get_account(call_of(context), request.account_id)
        return self._replies.get(
            "GetSeatSummary",
            summary,
            lambda: pb.GetSeatSummaryResponse(
                pools=[pool_pb(p, self.mpu) for p in summary.pools],
                renewal_time=ts(summary.account.renewal_time),
                term_start=ts(summary.account.term_start),
            ),
        )

    @rpc
    def PurchaseSeats(
        self, request: pb.PurchaseSeatsRequest, context: grpc.ServicerContext
    ) -> pb.PurchaseSeatsResponse:
        call = call_of(context, request.request_id)
        hub, tier = req_hub(request.hub), req_tier(request.tier)

        def compute() -> pb.PurchaseSeatsResponse:
            pool, charge = self.domain.purchase_seats(
                call, request.account_id, hub, tier, request.quantity, request.validate_only, request.etag
            )
            return pb.PurchaseSeatsResponse(
                pool=pool_pb(pool, self.mpu), charge=charge_pb(charge, self.mpu, saved=not request.validate_only)
            )

        if request.validate_only:
            return compute()
        return self.replay.run(call, request.account_id, "PurchaseSeats", request, pb.PurchaseSeatsResponse, compute)

    @rpc
    def ScheduleSeatRemoval(
        self, request: pb.ScheduleSeatRemovalRequest, context: grpc.ServicerContext
    ) -> pb.ScheduleSeatRemovalResponse:
        call = call_of(context, request.request_id)
        hub, tier = req_hub(request.hub), req_tier(request.tier)

        def compute() -> pb.ScheduleSeatRemovalResponse:
            pool = self.domain.schedule_removal(call, request.account_id, hub, tier, request.quantity, request.etag)
            return pb.ScheduleSeatRemovalResponse(pool=pool_pb(pool, self.mpu))

        return self.replay.run(
            call, request.account_id, "ScheduleSeatRemoval", request, pb.ScheduleSeatRemovalResponse, compute
        )

    @rpc
    def CancelSeatRemoval(
        self, request: pb.CancelSeatRemovalRequest, context: grpc.ServicerContext
    ) -> pb.CancelSeatRemovalResponse:
        call = call_of(context, request.request_id)
        hub, tier = req_hub(request.hub), req_tier(request.tier)

        def compute() -> pb.CancelSeatRemovalResponse:
            pool = self.domain.cancel_removal(call, request.account_id, hub, tier, request.quantity, request.etag)
            return pb.CancelSeatRemovalResponse(pool=pool_pb(pool, self.mpu))

        return self.replay.run(
            call, request.account_id, "CancelSeatRemoval", request, pb.CancelSeatRemovalResponse, compute
        )

    @rpc
    def AssignSeat(self, request: pb.AssignSeatRequest, context: grpc.ServicerContext) -> pb.AssignSeatResponse:
        call = call_of(context, request.request_id)
        hub, tier = req_hub(request.hub), req_tier(request.tier)

        def compute() -> pb.AssignSeatResponse:
            result = self.domain.assign_seat(
                call, request.account_id, request.user_id, hub, tier, request.purchase_if_needed
            )
            reply = pb.AssignSeatResponse(
                assignment=assignment_pb(result.assignment),
                pool=pool_pb(result.pool, self.mpu),
                changed=result.changed,
                previous_tier=r.Tier.ValueType(result.previous_tier or 0),
            )
            if result.charge is not None:
                reply.charge.CopyFrom(charge_pb(result.charge, self.mpu))
            return reply

        return self.replay.run(call, request.account_id, "AssignSeat", request, pb.AssignSeatResponse, compute)

    @rpc
    def UnassignSeat(self, request: pb.UnassignSeatRequest, context: grpc.ServicerContext) -> pb.UnassignSeatResponse:
        call = call_of(context, request.request_id)
        hub = req_hub(request.hub)

        def compute() -> pb.UnassignSeatResponse:
            pool = self.domain.unassign_seat(call, request.account_id, request.user_id, hub)
            return pb.UnassignSeatResponse(pool=pool_pb(pool, self.mpu))

        return self.replay.run(call, request.account_id, "UnassignSeat", request, pb.UnassignSeatResponse, compute)

    @rpc
    def BatchUpdateSeatAssignments(
        self, request: pb.BatchUpdateSeatAssignmentsRequest, context: grpc.ServicerContext
    ) -> pb.BatchUpdateSeatAssignmentsResponse:
        call = call_of(context, request.request_id)
        check_count("changes", len(request.changes), "changes")
        changes = [
            (c.user_id, req_hub(c.hub, f"changes[{i}].hub"), tier_of(c.tier, f"changes[{i}].tier", optional=True))
            for i, c in enumerate(request.changes)
        ]

        def compute() -> pb.BatchUpdateSeatAssignmentsResponse:
            result = self.domain.batch_update(call, request.account_id, changes, request.validate_only)
            return pb.BatchUpdateSeatAssignmentsResponse(
                results=[
                    pb.SeatChangeResult(
                        user_id=x.user_id,
                        hub=r.Hub.ValueType(x.hub),
                        tier=r.Tier.ValueType(x.tier or 0),
                        previous_tier=r.Tier.ValueType(x.previous_tier or 0),
                        outcome=pb.SeatChangeOutcome.ValueType(x.outcome),
                    )
                    for x in result.results
                ],
                pools=[pool_pb(p, self.mpu) for p in result.pools],
            )

        if request.validate_only:
            return compute()
        return self.replay.run(
            call,
            request.account_id,
            "BatchUpdateSeatAssignments",
            request,
            pb.BatchUpdateSeatAssignmentsResponse,
            compute,
        )

    @rpc
    def ListSeatAssignments(
        self, request: pb.ListSeatAssignmentsRequest, context: grpc.ServicerContext
    ) -> pb.ListSeatAssignmentsResponse:
        page = self.domain.list_assignments(
            call_of(context),
            request.account_id,
            hub_of(request.hub, "hub", optional=True),
            tier_of(request.tier, "tier", optional=True),
            request.page_size,
            request.page_token,
            from_ts(request.idle_since, "idle_since") if request.HasField("idle_since") else None,
        )
        return self._replies.get(
            "ListSeatAssignments",
            page,
            lambda: pb.ListSeatAssignmentsResponse(
                assignments=[assignment_pb(a) for a in page.items], next_page_token=page.next_key or ""
            ),
        )

    @rpc
    def CheckSeats(self, request: pb.CheckSeatsRequest, context: grpc.ServicerContext) -> pb.CheckSeatsResponse:
        answer = self.domain.check_seats(
            call_of(context), request.account_id, req_hub(request.hub), list(request.user_ids)
        )
        tiers, sequence = answer

        def build() -> pb.CheckSeatsResponse:
            return pb.CheckSeatsResponse(tiers=[t or 0 for t in tiers], sequence=sequence)  # type: ignore[misc]

        if len(tiers) > MAX_KEPT_CHECK:  # answers the use case does not keep are built each time
            return build()
        return self._replies.get("CheckSeats", answer, build)

    @rpc
    def UpgradeSubscription(
        self, request: pb.UpgradeSubscriptionRequest, context: grpc.ServicerContext
    ) -> pb.UpgradeSubscriptionResponse:
        call = call_of(context, request.request_id)
        hub, tier = req_hub(request.hub), req_tier(request.tier)
        check_count("assign_user_ids", len(request.assign_user_ids), "ids")
        for i, user_id in enumerate(request.assign_user_ids):
            if not user_id:
                raise invalid(f"assign_user_ids[{i}]", "is empty")

        def compute() -> pb.UpgradeSubscriptionResponse:
            result = self.domain.upgrade(
                call,
                request.account_id,
                hub,
                tier,
                request.purchased_seats,
                list(request.assign_user_ids),
                request.validate_only,
            )
            return pb.UpgradeSubscriptionResponse(
                account=account_pb(result.account),
                charges=[charge_pb(c, self.mpu, saved=not request.validate_only) for c in result.charges],
                pool=pool_pb(result.pool, self.mpu),
            )

        if request.validate_only:
            return compute()
        return self.replay.run(
            call, request.account_id, "UpgradeSubscription", request, pb.UpgradeSubscriptionResponse, compute
        )

    @rpc
    def PreviewInvoice(
        self, request: pb.PreviewInvoiceRequest, context: grpc.ServicerContext
    ) -> pb.PreviewInvoiceResponse:
        check_count("purchases", len(request.purchases), "changes")
        check_count("removals", len(request.removals), "changes")
        purchases = [
            (req_hub(c.hub, f"purchases[{i}].hub"), req_tier(c.tier, f"purchases[{i}].tier"), c.quantity)
            for i, c in enumerate(request.purchases)
        ]
        removals = [
            (req_hub(c.hub, f"removals[{i}].hub"), req_tier(c.tier, f"removals[{i}].tier"), c.quantity)
            for i, c in enumerate(request.removals)
        ]
        inv = self.domain.preview_invoice(call_of(context), request.account_id, purchases, removals)
        cur = inv.currency_code
        return pb.PreviewInvoiceResponse(
            term_start=ts(inv.term_start),
            renewal_time=ts(inv.renewal_time),
            current_term_charges=[charge_pb(c, self.mpu) for c in inv.current_term_charges],
            current_term_total=money(inv.current_term_total_minor, cur, self.mpu),
            next_renewal_lines=[
                pb.InvoiceLine(
                    kind=r.ChargeKind.ValueType(x.kind),
                    hub=r.Hub.ValueType(x.hub),
                    tier=r.Tier.ValueType(x.tier),
                    quantity=x.quantity,
                    unit_price=money(x.unit_price_minor, cur, self.mpu),
                    amount=money(x.amount_minor, cur, self.mpu),
                    description=x.description,
                )
                for x in inv.next_renewal_lines
            ],
            next_renewal_total=money(inv.next_renewal_total_minor, cur, self.mpu),
            proposed_charges=[charge_pb(c, self.mpu, saved=False) for c in inv.proposed_charges],
            proposed_total=money(inv.proposed_total_minor, cur, self.mpu),
        )

    @rpc
    def ListInvoices(self, request: pb.ListInvoicesRequest, context: grpc.ServicerContext) -> pb.ListInvoicesResponse:
        page = self.domain.list_invoices(call_of(context), request.account_id, request.page_size, request.page_token)
        return pb.ListInvoicesResponse(
            invoices=[invoice_pb(i, self.mpu) for i in page.items], next_page_token=page.next_key or ""
        )

    @rpc
    def GetInvoice(self, request: pb.GetInvoiceRequest, context: grpc.ServicerContext) -> pb.GetInvoiceResponse:
        invoice = self.domain.get_invoice(call_of(context), request.account_id, request.invoice_id)
        return pb.GetInvoiceResponse(invoice=invoice_pb(invoice, self.mpu))

    @rpc
    def ListSeatEvents(
        self, request: pb.ListSeatEventsRequest, context: grpc.ServicerContext
    ) -> pb.ListSeatEventsResponse:
        page = self.domain.list_events(
            call_of(context), request.account_id, request.after_sequence, request.page_size, request.page_token
        )
        return self._replies.get(
            "ListSeatEvents",
            page,
            lambda: pb.ListSeatEventsResponse(
                events=[event_pb(e) for e in page.items], next_page_token=page.next_key or ""
            ),
        )

    @stream_rpc
    def WatchSeatEvents(
        self, request: pb.WatchSeatEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchSeatEventsResponse]:
        """Past events after the cursor, then new ones as they commit: woken at once by
        commits of this process, and by polling for commits of other replicas. Before it
        sends events of a newer account version it checks the actor again, and it ends
        after watch_max_seconds; both end the stream with a status, after which the client
        watches again from the last sequence it received."""
        call = call_of(context)
        account_id = request.account_id
        verified = self.domain.check_watch(call, account_id, request.after_sequence)
        refused_by = self.watch_slots.take(account_id)
        if refused_by is not None:
            raise self._too_many_watches(account_id, refused_by)
        ended = threading.Event()

        def on_end() -> None:
            ended.set()
            self.hub.interrupt()

        # A call the client cancels (or whose deadline passes) stops waiting at once, so that
        # its slot goes back now rather than at the next poll.
        if not context.add_callback(on_end):
            ended.set()
        try:
            cursor = request.after_sequence
            deadline = time.monotonic() + self.watch_max_seconds
            while not ended.is_set() and context.is_active() and not self.hub.closed:
                if time.monotonic() >= deadline:
                    # UNAVAILABLE, not ABORTED: the stream ends for the server's reasons, not
                    # for the request's, and the same call from the cursor will work. gRPC's
                    # own connection age limit ends streams with UNAVAILABLE, and every client
                    # (ours, older ones, generic ones) already watches again on UNAVAILABLE;
                    # ABORTED means a lost race and our clients do not resume on it. The reason
                    # lets a client resume at once instead of backing off as after a failure.
                    raise SeatError(
                        Kind.UNAVAILABLE,
                        reason(ErrorReason.WATCH_EXPIRED),
                        f"the watch reached its longest life ({self.watch_max_seconds:g}s); "
                        "watch again from the last sequence you received",
                        {"after_sequence": str(cursor)},
                    )
                version = self.hub.version(account_id)
                events = self.domain.events_after(account_id, cursor, WATCH_BATCH)
                if events and events[-1].sequence > verified:
                    # A newer version: may the actor still read it? From memory when it can.
                    verified = self.domain.recheck_watch(
                        call, account_id, events[-1].sequence, head=len(events) < WATCH_BATCH
                    )
                for event in events:
                    yield pb.WatchSeatEventsResponse(event=event_pb(event))
                    cursor = event.sequence
                if len(events) < WATCH_BATCH:
                    left = deadline - time.monotonic()
                    self.hub.wait(account_id, version, max(0.0, min(self.watch_poll_seconds, left)), ended.is_set)
            if self.hub.closed and context.is_active():
                raise SeatError(
                    Kind.UNAVAILABLE,
                    reason(ErrorReason.SHUTTING_DOWN),
                    "the server is shutting down; watch again from the last sequence you received",
                    {"after_sequence": str(cursor)},
                )
        finally:
            self.watch_slots.give_back(account_id)

    @rpc
    def RecordSeatActivity(
        self, request: pb.RecordSeatActivityRequest, context: grpc.ServicerContext
    ) -> pb.RecordSeatActivityResponse:
        reports = [
            (
                a.user_id,
                HUBS.get(a.hub) or hub_of(a.hub, f"activities[{i}].hub"),
                micros_of(a.activity_time, f"activities[{i}].activity_time") if a.HasField("activity_time") else None,
            )
            for i, a in enumerate(request.activities)
        ]
        recorded, skipped = self.domain.record_seat_activity(call_of(context), request.account_id, reports)
        return pb.RecordSeatActivityResponse(recorded=recorded, skipped=skipped)

    @rpc
    def UpdateSeatPolicy(
        self, request: pb.UpdateSeatPolicyRequest, context: grpc.ServicerContext
    ) -> pb.UpdateSeatPolicyResponse:
        call = call_of(context, request.request_id)
        hub, tier = req_hub(request.hub), req_tier(request.tier)

        paths = frozenset(request.update_mask.paths)
        fields = POLICY_FIELDS if not paths or paths == {"*"} else paths

        def compute() -> pb.UpdateSeatPolicyResponse:
            pool, idle = self.domain.update_seat_policy(
                call,
                request.account_id,
                hub,
                tier,
                request.idle_reclaim_days,
                validate_only=request.validate_only,
                auto_approve_requests=request.auto_approve_requests,
                fields=fields,
            )
            return pb.UpdateSeatPolicyResponse(
                pool=pool_pb(pool, self.mpu), idle_seats=[assignment_pb(a) for a in idle]
            )

        if request.validate_only:
            return compute()
        return self.replay.run(
            call, request.account_id, "UpdateSeatPolicy", request, pb.UpdateSeatPolicyResponse, compute
        )

    @rpc
    def RequestSeat(self, request: pb.RequestSeatRequest, context: grpc.ServicerContext) -> pb.RequestSeatResponse:
        call = call_of(context, request.request_id)
        hub, tier = req_hub(request.hub), req_tier(request.tier)

        def compute() -> pb.RequestSeatResponse:
            seat_request, assignment = self.domain.request_seat(
                call, request.account_id, request.user_id, hub, tier, request.reason
            )
            reply = pb.RequestSeatResponse(seat_request=seat_request_pb(seat_request))
            if assignment is not None:
                reply.assignment.CopyFrom(assignment_pb(assignment))
            return reply

        return self.replay.run(call, request.account_id, "RequestSeat", request, pb.RequestSeatResponse, compute)

    @rpc
    def ListSeatRequests(
        self, request: pb.ListSeatRequestsRequest, context: grpc.ServicerContext
    ) -> pb.ListSeatRequestsResponse:
        state = request.state
        if state and state not in r.SeatRequestState.values():
            raise invalid("state", f"unknown state {state}")
        page = self.domain.list_seat_requests(
            call_of(context),
            request.account_id,
            RequestState(state) if state else None,
            hub_of(request.hub, "hub", optional=True),
            request.user_id or None,
            request.page_size,
            request.page_token,
        )
        return pb.ListSeatRequestsResponse(
            seat_requests=[seat_request_pb(q) for q in page.items], next_page_token=page.next_key or ""
        )

    @rpc
    def ApproveSeatRequest(
        self, request: pb.ApproveSeatRequestRequest, context: grpc.ServicerContext
    ) -> pb.ApproveSeatRequestResponse:
        call = call_of(context, request.request_id)

        def compute() -> pb.ApproveSeatRequestResponse:
            seat_request, assignment, pool, charge = self.domain.approve_seat_request(
                call, request.account_id, request.seat_request_id, request.purchase_if_needed
            )
            reply = pb.ApproveSeatRequestResponse(
                seat_request=seat_request_pb(seat_request), pool=pool_pb(pool, self.mpu)
            )
            if assignment is not None:
                reply.assignment.CopyFrom(assignment_pb(assignment))
            if charge is not None:
                reply.charge.CopyFrom(charge_pb(charge, self.mpu))
            return reply

        return self.replay.run(
            call, request.account_id, "ApproveSeatRequest", request, pb.ApproveSeatRequestResponse, compute
        )

    @rpc
    def DenySeatRequest(
        self, request: pb.DenySeatRequestRequest, context: grpc.ServicerContext
    ) -> pb.DenySeatRequestResponse:
        call = call_of(context, request.request_id)

        def compute() -> pb.DenySeatRequestResponse:
            denied = self.domain.deny_seat_request(call, request.account_id, request.seat_request_id)
            return pb.DenySeatRequestResponse(seat_request=seat_request_pb(denied))

        return self.replay.run(
            call, request.account_id, "DenySeatRequest", request, pb.DenySeatRequestResponse, compute
        )

    def _too_many_watches(self, account_id: str, limit: str) -> SeatError:
        slots = self.watch_slots
        if limit == WatchSlots.ACCOUNT:
            message = (
                f"account {account_id!r} already has {slots.per_account} event watches open on this server, "
                "the most one account may; close one, retry later or page with ListSeatEvents"
            )
            most = slots.per_account
        else:
            message = "this server runs as many event watches as it may; retry later or page with ListSeatEvents"
            most = slots.per_server
        return SeatError(
            Kind.RESOURCE_EXHAUSTED, reason(ErrorReason.TOO_MANY_WATCHES), message, {"limit": limit, "max": str(most)}
        )
