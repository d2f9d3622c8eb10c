package org.hospitalhub.qc;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * Computes the tasks a visit must have from its clinical events, the hand-made corrections and the rules, as of
 * {@code now}. Pure: the same inputs give the same tasks, so applying an event twice, applying events out of order, or
 * recomputing after a crash all end in the same state, and reconciliation is "compute again and compare".
 * <p>
 * Semantics, in event-time order (ties in arrival order):
 * <ul>
 * <li>Nothing happens for a visit before its {@code qc.admission}: its other events are HELD until it arrives.</li>
 * <li>A cancel event cancels the event it names (admission; the latest discharge at or before it; the latest transfer
 * at or before it with its transferId, or with its move when it names only {@code <from>><to>}, out and in). Tasks
 * opened by a cancelled event are CANCELLED; a cancelled event has no other effect (a cancelled discharge does not stop
 * the progress notes, so the period it had stopped reopens). Cancelling the admission
 * cancels every task of the visit not yet completed. A cancel whose event has not arrived is HELD.</li>
 * <li>Single rules: each triggering event opens one task per rule and instance (instanceKey value, else the event),
 * due {@code deadline} after the event time.</li>
 * <li>Recurring rules: period 1 opens at the trigger and is due one period later (the period of the condition level;
 * a condition change during a period brings its due time forward to change time + new period if that is earlier).
 * A note closes the running period (on time or late) and opens the next at the note's time, so the notes are never
 * further apart than the period. A period whose due time passes without a note is OVERDUE until a note closes it
 * late. The first {@code until} event (discharge, death) cancels a period not yet due and ends the series; a period
 * already overdue may still be closed late.</li>
 * <li>A completed document closes the open task of its type (the one of its {@code relatesTo} instance if given,
 * else the one due first); on time if written by the due time. A document for which no task exists yet is HELD.</li>
 * <li>Completed tasks stay completed.</li>
 * </ul>
 */
public final class VisitProjection {

    private VisitProjection() {
    }

    public enum Disposition {
        APPLIED,
        HELD,
        IGNORED
    }

    public record Outcome(Disposition disposition, String reason) {
    }

    /** A close or cancel by hand (qc_audit), addressed to a task by its key. */
    public record ManualAction(long auditId, String action, String ruleId, String instance, int period, Instant at,
            String actor, String reason) {
    }

    public record Visit(String patientId, String status, String department, String doctor, String level,
            Instant admittedAt, Instant lastEventAt) {
    }

    public record Result(Visit visit, List<TaskSpec> tasks, Map<String, Outcome> outcomes) {
    }

    private static final int MAX_PERIODS = 10_000;
    private static final Comparator<ClinicalEvent> ORDER = Comparator.comparing(ClinicalEvent::at)
            .thenComparingLong(ClinicalEvent::seq);

    /** A task being computed. */
    private static final class Draft {
        final Rule rule;
        final String instance;
        final int period;
        final String patientId;
        final String department;
        final String doctor;
        final List<String> recipients;
        final Instant openedAt;
        final String openedBy;
        String level;
        Instant due;
        Instant completedAt;
        String closedBy;
        String closeReason;
        boolean cancelled;

        Draft(Rule rule, String instance, int period, String patientId, String department, String doctor,
                List<String> recipients, Instant openedAt, String openedBy, Instant due, String level) {
            this.rule = rule;
            this.instance = instance;
            this.period = period;
            this.patientId = patientId;
            this.department = department;
            this.doctor = doctor;
            this.recipients = recipients;
            this.openedAt = openedAt;
            this.openedBy = openedBy;
            this.due = due;
            this.level = level;
        }

        boolean closed() {
            return cancelled || completedAt != null;
        }

        void complete(Instant at, String by, String reason) {
            completedAt = at;
            closedBy = by;
            closeReason = reason;
        }

        void cancel(String by, String reason) {
            cancelled = true;
            closedBy = by;
            closeReason = reason;
        }

        String key() {
            return TaskSpec.key(rule.id(), instance, period);
        }

        TaskSpec spec(Instant now) {
            TaskStatus status;
            if (cancelled) {
                status = TaskStatus.CANCELLED;
            } else if (completedAt != null) {
                status = completedAt.isAfter(due) ? TaskStatus.COMPLETED_LATE : TaskStatus.COMPLETED_ON_TIME;
            } else {
                status = due.isAfter(now) ? TaskStatus.OPEN : TaskStatus.OVERDUE;
            }
            List<Instant> reminders = rule.reminders().stream().map(due::minus).filter(t -> t.isAfter(openedAt)).sorted()
                    .distinct().toList();
            return new TaskSpec(rule.id(), instance, period, rule.document(), patientId, department, doctor, recipients,
                    level, openedAt, openedBy, due, reminders, status, cancelled ? null : completedAt, closedBy, closeReason,
                    rule.points());
        }
    }

    /** Department, doctor and condition level of the visit when an event happened. */
    private record Context(String department, String doctor, String level) {
    }

    /** Whether a cancel's transferId names a transfer's: the same id, or its move ({@code <from>><to>} before a "/"). */
    static boolean namesTransfer(String cancel, String transfer) {
        return cancel != null && transfer != null && (transfer.equals(cancel)
                || transfer.length() > cancel.length() && transfer.startsWith(cancel) && transfer.charAt(cancel.length()) == '/');
    }

    public static Result project(List<ClinicalEvent> log, List<ManualAction> manual, List<Rule> rules, Instant now) {
        List<ClinicalEvent> events = new ArrayList<>(log);
        events.sort(ORDER);
        Map<String, Outcome> out = new LinkedHashMap<>();
        Instant last = events.isEmpty() ? null : events.stream().map(ClinicalEvent::at).max(Instant::compareTo).orElseThrow();
        ClinicalEvent adm = events.stream().filter(e -> e.type().equals(ClinicalEvent.ADMISSION)).findFirst().orElse(null);
        if (adm == null) {
            for (ClinicalEvent e : events) {
                out.put(e.eventId(), new Outcome(Disposition.HELD, "waits for the qc.admission of visit " + e.visitId()));
            }
            String patient = events.isEmpty() ? null : events.get(0).patientId();
            return new Result(new Visit(patient, "PENDING", null, null, null, null, last), List.of(), out);
        }

        // 1. Which events are cancelled, and by what.
        Map<String, ClinicalEvent> cancelledBy = new HashMap<>();
        for (ClinicalEvent c : events) {
            if (!ClinicalEvent.CANCELS.contains(c.type())) {
                continue;
            }
            List<ClinicalEvent> targets = new ArrayList<>();
            String waitsFor;
            switch (c.type()) {
                case ClinicalEvent.ADMISSION_CANCELLED -> {
                    waitsFor = ClinicalEvent.ADMISSION;
                    if (cancelledBy.containsKey(adm.eventId())) {
                        out.put(c.eventId(), new Outcome(Disposition.IGNORED, "the admission was already cancelled by "
                                + cancelledBy.get(adm.eventId()).eventId()));
                        continue;
                    }
                    targets.add(adm);
                }
                case ClinicalEvent.DISCHARGE_CANCELLED -> {
                    waitsFor = ClinicalEvent.DISCHARGE + " at or before " + c.at();
                    ClinicalEvent latest = null;
                    for (ClinicalEvent e : events) {
                        if (e.type().equals(ClinicalEvent.DISCHARGE) && !e.at().isAfter(c.at())
                                && !cancelledBy.containsKey(e.eventId())) {
                            latest = e;
                        }
                    }
                    if (latest != null) {
                        targets.add(latest);
                    }
                }
                default -> {
                    // the transfer it names: by its transferId, or by the move alone (the HL7 intake's A12 names
                    // "<from>><to>", its A02s "<from>><to>/<tag>"); as HL7's A12, the most recent one: the latest
                    // transfer-out and transfer-in at or before the cancel not cancelled yet (the same move made
                    // earlier stays). If every such event is later than the cancel (two systems' clocks), the first.
                    String transfer = c.text("transferId");
                    waitsFor = "transfer " + transfer;
                    for (String type : List.of(ClinicalEvent.TRANSFER_OUT, ClinicalEvent.TRANSFER_IN)) {
                        ClinicalEvent chosen = null;
                        for (ClinicalEvent e : events) {
                            if (e.type().equals(type) && namesTransfer(transfer, e.text("transferId"))
                                    && !cancelledBy.containsKey(e.eventId()) && (chosen == null || !e.at().isAfter(c.at()))) {
                                chosen = e;
                            }
                        }
                        if (chosen != null) {
                            targets.add(chosen);
                        }
                    }
                }
            }
            if (targets.isEmpty()) {
                out.put(c.eventId(), new Outcome(Disposition.HELD, "waits for the " + waitsFor + " it cancels"));
            } else {
                targets.forEach(t -> cancelledBy.put(t.eventId(), c));
                out.put(c.eventId(), new Outcome(Disposition.APPLIED, "cancels "
                        + String.join(", ", targets.stream().map(t -> t.type() + " " + t.eventId()).toList())));
            }
        }
        boolean admissionCancelled = cancelledBy.containsKey(adm.eventId());

        // 2. The visit's state over time: department, doctor, condition level, status.
        String department = adm.text("department");
        String doctor = adm.text("attendingDoctor");
        String initialLevel = Objects.requireNonNullElse(adm.text("conditionLevel"), ClinicalEvent.DEFAULT_LEVEL);
        String level = initialLevel;
        String status = "ADMITTED";
        Map<String, Context> context = new HashMap<>();
        for (ClinicalEvent e : events) {
            if (ClinicalEvent.CANCELS.contains(e.type()) || e.type().equals(ClinicalEvent.DOCUMENT_COMPLETED)) {
                continue;
            }
            context.put(e.eventId(), new Context(Objects.requireNonNullElse(e.text("department"), department),
                    Objects.requireNonNullElse(e.text("attendingDoctor"), doctor), level));
            if (e == adm || cancelledBy.containsKey(e.eventId())) {
                continue;
            }
            switch (e.type()) {
                case ClinicalEvent.TRANSFER_IN -> {
                    department = Objects.requireNonNullElse(e.text("department"), department);
                    doctor = Objects.requireNonNullElse(e.text("attendingDoctor"), doctor);
                }
                case ClinicalEvent.CONDITION_CHANGED -> level = Objects.requireNonNullElse(e.text("level"), level);
                case ClinicalEvent.DISCHARGE -> status = "DISCHARGED";
                case ClinicalEvent.DEATH -> status = "DEAD";
                case ClinicalEvent.ADMISSION -> out.put(e.eventId(), new Outcome(Disposition.IGNORED,
                        "the visit was already admitted by " + adm.eventId()));
                default -> {
                }
            }
        }
        if (admissionCancelled) {
            status = "CANCELLED";
        }

        Map<String, Draft> drafts = new LinkedHashMap<>();
        Set<String> opened = new HashSet<>();

        // 3. Single tasks.
        for (ClinicalEvent e : events) {
            if (!ClinicalEvent.TRIGGERS.contains(e.type()) || (e.type().equals(ClinicalEvent.ADMISSION) && e != adm)) {
                continue;
            }
            for (Rule r : rules) {
                if (r.isRecurring() || !r.triggerEvent().equals(e.type()) || !r.matches(e.payload())) {
                    continue;
                }
                String instance = r.instanceKey() != null ? e.text(r.instanceKey()) : e.eventId();
                if (instance == null || drafts.containsKey(TaskSpec.key(r.id(), instance, 0))) {
                    continue;
                }
                Draft d = draft(r, instance, 0, e, adm, context.get(e.eventId()), e.at(), e.at().plus(r.deadline()));
                ClinicalEvent c = cancelledBy.get(e.eventId());
                if (c != null) {
                    d.cancel(c.eventId(), "the " + e.type() + " " + e.eventId() + " was cancelled by " + c.type() + " "
                            + c.eventId());
                }
                drafts.put(d.key(), d);
                opened.add(e.eventId());
            }
        }

        // 4. Recurring series.
        List<ClinicalEvent> docs = events.stream().filter(e -> e.type().equals(ClinicalEvent.DOCUMENT_COMPLETED)).toList();
        Set<String> consumed = new HashSet<>();
        for (Rule r : rules) {
            if (!r.isRecurring()) {
                continue;
            }
            Set<String> started = new HashSet<>();
            for (ClinicalEvent e : events) {
                if (!r.triggerEvent().equals(e.type()) || !r.matches(e.payload())
                        || (e.type().equals(ClinicalEvent.ADMISSION) && e != adm)) {
                    continue;
                }
                String instance = r.instanceKey() != null ? e.text(r.instanceKey()) : "series";
                if (instance == null || !started.add(instance)) {
                    continue;
                }
                series(r, instance, e, adm, events, docs, manual, cancelledBy, context, initialLevel, drafts, consumed, out);
                opened.add(e.eventId());
            }
        }

        // 5. Closes and cancels by hand (single tasks; series periods were handled in their walk).
        List<ManualAction> byTime = new ArrayList<>(manual);
        byTime.sort(Comparator.comparing(ManualAction::at).thenComparingLong(ManualAction::auditId));
        for (ManualAction m : byTime) {
            Draft d = drafts.get(TaskSpec.key(m.ruleId(), m.instance(), m.period()));
            if (d == null || d.rule.isRecurring() || d.closed()) {
                continue;
            }
            manual(d, m);
        }

        // 6. Completed documents close single tasks.
        for (ClinicalEvent doc : docs) {
            if (consumed.contains(doc.eventId())) {
                continue;
            }
            String type = doc.text("documentType");
            String rel = doc.text("relatesTo");
            Draft best = null;
            for (Draft d : drafts.values()) {
                if (d.rule.isRecurring() || !d.rule.document().equals(type) || d.closed()
                        || (rel != null && d.rule.instanceKey() != null && !d.instance.equals(rel))) {
                    continue;
                }
                if (best == null || better(d, best, doc.at())) {
                    best = d;
                }
            }
            if (best != null) {
                best.complete(doc.at(), doc.eventId(), null);
                out.put(doc.eventId(), new Outcome(Disposition.APPLIED, "closes task " + best.key()));
                continue;
            }
            boolean ruled = rules.stream().anyMatch(r -> r.document().equals(type));
            boolean instanceRuled = rel != null && rules.stream().anyMatch(r -> r.document().equals(type) && r.instanceKey() != null);
            boolean instanceExists = drafts.values().stream().anyMatch(d -> d.rule.document().equals(type) && d.instance.equals(rel));
            boolean anyOfType = drafts.values().stream().anyMatch(d -> d.rule.document().equals(type));
            if (!ruled) {
                out.put(doc.eventId(), new Outcome(Disposition.IGNORED, "no rule asks for document type " + type));
            } else if (instanceRuled && !instanceExists) {
                out.put(doc.eventId(), new Outcome(Disposition.HELD, "waits for the event that opens the " + type
                        + " task of " + rel));
            } else if (anyOfType) {
                out.put(doc.eventId(), new Outcome(Disposition.IGNORED, "no open " + type + " task: an extra document"));
            } else {
                out.put(doc.eventId(), new Outcome(Disposition.HELD, "waits for the event that opens a " + type + " task"));
            }
        }

        // 7. A cancelled admission cancels the whole visit.
        if (admissionCancelled) {
            ClinicalEvent c = cancelledBy.get(adm.eventId());
            for (Draft d : drafts.values()) {
                if (!d.closed()) {
                    d.cancel(c.eventId(), "the admission was cancelled by " + c.eventId());
                }
            }
        }

        // 8. What each remaining event did.
        for (ClinicalEvent e : events) {
            if (out.containsKey(e.eventId())) {
                continue;
            }
            ClinicalEvent c = cancelledBy.get(e.eventId());
            if (c != null) {
                out.put(e.eventId(), new Outcome(Disposition.APPLIED, "cancelled by " + c.eventId()));
            } else if (e == adm || opened.contains(e.eventId()) || Set.of(ClinicalEvent.TRANSFER_IN, ClinicalEvent.TRANSFER_OUT,
                    ClinicalEvent.CONDITION_CHANGED, ClinicalEvent.DISCHARGE, ClinicalEvent.DEATH).contains(e.type())) {
                out.put(e.eventId(), new Outcome(Disposition.APPLIED, null));
            } else if (e.type().equals(ClinicalEvent.DOCUMENT_COMPLETED)) {
                out.put(e.eventId(), new Outcome(Disposition.APPLIED, "closes a recurring task"));
            } else {
                out.put(e.eventId(), new Outcome(Disposition.IGNORED, "no rule opens a task for this event"));
            }
        }
        List<TaskSpec> tasks = drafts.values().stream().map(d -> d.spec(now)).toList();
        return new Result(new Visit(adm.patientId(), status, department, doctor, level, adm.at(), last), tasks, out);
    }

    /** The better document match: opened by the document's time first, then due first, then opened first. */
    private static boolean better(Draft a, Draft b, Instant docAt) {
        boolean aBefore = !a.openedAt.isAfter(docAt);
        boolean bBefore = !b.openedAt.isAfter(docAt);
        if (aBefore != bBefore) {
            return aBefore;
        }
        int c = a.due.compareTo(b.due);
        if (c != 0) {
            return c < 0;
        }
        c = a.openedAt.compareTo(b.openedAt);
        return c != 0 ? c < 0 : a.key().compareTo(b.key()) < 0;
    }

    private static void manual(Draft d, ManualAction m) {
        String by = "manual:" + m.auditId();
        if ("CLOSE".equals(m.action())) {
            d.complete(m.at(), by, "closed by hand by " + m.actor() + ": " + m.reason());
        } else {
            d.cancel(by, "cancelled by hand by " + m.actor() + ": " + m.reason());
        }
    }

    private static Draft draft(Rule r, String instance, int period, ClinicalEvent trigger, ClinicalEvent adm, Context ctx,
            Instant openedAt, Instant due) {
        Context c = ctx != null ? ctx : new Context(adm.text("department"), adm.text("attendingDoctor"), null);
        List<String> recipients = new ArrayList<>();
        String doctor = null;
        String department = null;
        for (String spec : r.recipients()) {
            String resolved = switch (spec) {
                case "attending" -> c.doctor() == null ? null : "doctor:" + c.doctor();
                case "department" -> c.department() == null ? null : "department:" + c.department();
                default -> {
                    if (spec.startsWith("role:")) {
                        yield spec + "@" + c.department();
                    }
                    int colon = spec.indexOf(':');
                    String v = trigger.text(spec.substring(colon + 1));
                    if (v == null) {
                        yield null;
                    }
                    String kind = spec.substring(0, colon);
                    if (kind.equals("doctor") && doctor == null) {
                        doctor = v;
                    } else if (kind.equals("department") && department == null) {
                        department = v;
                    }
                    yield kind + ":" + v;
                }
            };
            if (resolved != null && !recipients.contains(resolved)) {
                recipients.add(resolved);
            }
        }
        if (recipients.isEmpty() && c.department() != null) {
            recipients.add("department:" + c.department());
        }
        return new Draft(r, instance, period, adm.patientId(), department != null ? department : c.department(),
                doctor != null ? doctor : c.doctor(), List.copyOf(recipients), openedAt, trigger.eventId(), due, c.level());
    }

    /** One step of a recurring series' walk. */
    private record Step(Instant at, long seq, ClinicalEvent event, ManualAction manual) {
    }

    private static void series(Rule r, String instance, ClinicalEvent trigger, ClinicalEvent adm, List<ClinicalEvent> events,
            List<ClinicalEvent> docs, List<ManualAction> manual, Map<String, ClinicalEvent> cancelledBy,
            Map<String, Context> context, String initialLevel, Map<String, Draft> drafts, Set<String> consumed,
            Map<String, Outcome> out) {
        String level = initialLevel;
        List<Step> steps = new ArrayList<>();
        for (ClinicalEvent e : events) {
            if (cancelledBy.containsKey(e.eventId())) {
                continue;
            }
            boolean change = e.type().equals(ClinicalEvent.CONDITION_CHANGED);
            if (change && ORDER.compare(e, trigger) <= 0) {
                level = Objects.requireNonNullElse(e.text("level"), level); // the level when the series starts
            } else if (change || (r.recurring().until().contains(e.type()) && !e.at().isBefore(trigger.at()))) {
                steps.add(new Step(e.at(), e.seq(), e, null));
            }
        }
        for (ClinicalEvent d : docs) {
            if (r.document().equals(d.text("documentType")) && !consumed.contains(d.eventId()) && !d.at().isBefore(trigger.at())) {
                steps.add(new Step(d.at(), d.seq(), d, null));
            }
        }
        for (ManualAction m : manual) {
            if (m.ruleId().equals(r.id()) && m.instance().equals(instance)) {
                steps.add(new Step(m.at(), Long.MAX_VALUE, null, m));
            }
        }
        steps.sort(Comparator.comparing(Step::at).thenComparingLong(Step::seq)
                .thenComparingLong(s -> s.manual() == null ? 0 : s.manual().auditId()));

        Context start = context.get(trigger.eventId());
        Draft cur = period(r, instance, 1, trigger, adm, start, trigger.at(), level, drafts);
        boolean stopped = false;
        ClinicalEvent triggerCancel = cancelledBy.get(trigger.eventId());
        for (Step s : steps) {
            if (cur == null) {
                break;
            }
            ClinicalEvent e = s.event();
            if (s.manual() != null) {
                if (s.manual().period() != cur.period) {
                    continue;
                }
                manual(cur, s.manual());
            } else if (e.type().equals(ClinicalEvent.CONDITION_CHANGED)) {
                level = Objects.requireNonNullElse(e.text("level"), level);
                if (!stopped && e.at().isBefore(cur.due)) {
                    Instant sooner = e.at().plus(r.recurring().periodFor(level));
                    if (sooner.isBefore(cur.due)) {
                        cur.due = sooner;
                        cur.level = level;
                    }
                }
                continue;
            } else if (e.type().equals(ClinicalEvent.DOCUMENT_COMPLETED)) {
                if (e.at().isBefore(cur.openedAt)) {
                    continue;
                }
                cur.complete(e.at(), e.eventId(), null);
                consumed.add(e.eventId());
                out.put(e.eventId(), new Outcome(Disposition.APPLIED, "closes task " + cur.key()));
            } else { // an until event: the series ends
                if (stopped) {
                    continue;
                }
                stopped = true;
                if (cur.due.isAfter(e.at())) {
                    cur.cancel(e.eventId(), "not needed after " + e.type() + " " + e.eventId());
                    cur = null;
                }
                continue;
            }
            // the running period was closed (note or by hand): the next one opens then, unless the series ended
            if (stopped || cur.period >= MAX_PERIODS) {
                cur = null;
            } else {
                Instant at = cur.completedAt != null ? cur.completedAt : s.at();
                Context now = new Context(start == null ? null : start.department(), start == null ? null : start.doctor(), level);
                Context latest = latestContext(events, cancelledBy, context, at);
                cur = period(r, instance, cur.period + 1, trigger, adm, latest != null ? new Context(latest.department(),
                        latest.doctor(), level) : now, at, level, drafts);
            }
        }
        if (triggerCancel != null) {
            for (Draft d : drafts.values()) {
                if (d.rule == r && d.instance.equals(instance) && !d.closed()) {
                    d.cancel(triggerCancel.eventId(), "the " + trigger.type() + " " + trigger.eventId() + " was cancelled by "
                            + triggerCancel.eventId());
                }
            }
        }
    }

    /** Department and doctor in charge at a time: those of the last transfer in (or the admission) before it. */
    private static Context latestContext(List<ClinicalEvent> events, Map<String, ClinicalEvent> cancelledBy,
            Map<String, Context> context, Instant at) {
        Context found = null;
        for (ClinicalEvent e : events) {
            if (e.at().isAfter(at)) {
                break;
            }
            if (cancelledBy.containsKey(e.eventId())) {
                continue;
            }
            if (e.type().equals(ClinicalEvent.ADMISSION) && found == null) {
                found = context.get(e.eventId());
            } else if (e.type().equals(ClinicalEvent.TRANSFER_IN)) {
                Context c = context.get(e.eventId());
                found = new Context(Objects.requireNonNullElse(e.text("department"), c.department()),
                        Objects.requireNonNullElse(e.text("attendingDoctor"), c.doctor()), c.level());
            }
        }
        return found;
    }

    private static Draft period(Rule r, String instance, int n, ClinicalEvent trigger, ClinicalEvent adm, Context ctx,
            Instant anchor, String level, Map<String, Draft> drafts) {
        Duration p = r.recurring().periodFor(level);
        Draft d = draft(r, instance, n, trigger, adm, ctx == null ? null : new Context(ctx.department(), ctx.doctor(), level),
                anchor, anchor.plus(p));
        d.level = level;
        drafts.put(d.key(), d);
        return d;
    }
}
