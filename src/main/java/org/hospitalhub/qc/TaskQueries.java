package org.hospitalhub.qc;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;

import jakarta.enterprise.context.ApplicationScoped;

import org.apache.camel.CamelContext;
import org.apache.camel.model.Model;
import org.apache.camel.model.RouteDefinition;
import org.hospitalhub.delivery.Database;

/** Read side of qc for the REST API: tasks with their history, the task-event feed, held events, failed events, audit. */
@ApplicationScoped
public class TaskQueries {

    private final Database db;
    private final TaskEngine engine;
    private final CamelContext camel;

    public TaskQueries(Database db, TaskEngine engine, CamelContext camel) {
        this.db = db;
        this.engine = engine;
        this.camel = camel;
    }

    public record Task(long id, String hospital, String visitId, String patientId, String rule, String instance, int period,
            String documentType, String department, String doctor, List<String> recipients, String conditionLevel,
            TaskStatus status, Instant openedAt, String openedBy, Instant dueAt, List<Instant> reminders, Instant completedAt,
            String closedBy, String closeReason, Instant overdueAt, double points, boolean timersScheduled, Instant updatedAt) {
    }

    public record TaskEvent(long id, long taskId, String hospital, String visitId, String kind, String status, Instant at,
            String department, String doctor, List<String> recipients, String detail) {
    }

    public record TaskDetail(Task task, List<TaskEvent> history) {
    }

    public record Page<T>(long total, int limit, int offset, List<T> items) {
    }

    public record HeldEvent(long seq, String eventId, String hospital, String visitId, String type, Instant occurredAt,
            Instant receivedAt, String reason) {
    }

    public record FailedEvent(long id, String eventId, String type, String flow, String errorClass, String errorMessage,
            int attempts, Instant lastFailedAt, String status, String resolvedBy, String resolution) {
    }

    public record AuditEntry(long id, Instant at, String actor, String action, String hospital, String visitId, Long taskId,
            String target, String reason, Instant effectiveAt, String detail) {
    }

    private static final String TASK_COLUMNS = "id, hospital, visit_id, patient_id, rule_id, instance_key, period_no, "
            + "document_type, department, doctor, recipients, condition_level, status, opened_at, opened_by, due_at, remind_at, "
            + "completed_at, closed_by, close_reason, overdue_at, points, timer_due_at, updated_at";

    private Task task(ResultSet rs) throws SQLException {
        Instant due = TaskEngine.instant(rs, 16);
        Instant timerDue = TaskEngine.instant(rs, 23);
        return new Task(rs.getLong(1), rs.getString(2), rs.getString(3), rs.getString(4), rs.getString(5), rs.getString(6),
                rs.getInt(7), rs.getString(8), rs.getString(9), rs.getString(10), engine.list(rs.getString(11)), rs.getString(12),
                TaskStatus.valueOf(rs.getString(13)), TaskEngine.instant(rs, 14), rs.getString(15), due,
                TaskEngine.reminders(rs.getString(17)), TaskEngine.instant(rs, 18), rs.getString(19), rs.getString(20),
                TaskEngine.instant(rs, 21), rs.getDouble(22), timerDue != null && timerDue.equals(due), TaskEngine.instant(rs, 24));
    }

    public Page<Task> tasks(Map<String, String> filters, int limit, int offset) throws SQLException {
        Map<String, String> columns = Map.of("hospital", "hospital", "visit", "visit_id", "patient", "patient_id",
                "department", "department", "doctor", "doctor", "status", "status", "documentType", "document_type",
                "rule", "rule_id");
        StringBuilder where = new StringBuilder(" WHERE 1 = 1");
        List<Object> args = new ArrayList<>();
        filters.forEach((k, v) -> {
            where.append(" AND ").append(columns.get(k)).append(" = ?");
            args.add(v);
        });
        try (Connection c = db.connection()) {
            long total;
            try (PreparedStatement q = c.prepareStatement("SELECT COUNT(*) FROM qc_task" + where)) {
                bind(q, args);
                try (ResultSet rs = q.executeQuery()) {
                    rs.next();
                    total = rs.getLong(1);
                }
            }
            List<Task> items = new ArrayList<>();
            try (PreparedStatement q = c.prepareStatement("SELECT " + TASK_COLUMNS + " FROM qc_task" + where
                    + " ORDER BY due_at, id LIMIT ? OFFSET ?")) {
                int i = bind(q, args);
                q.setInt(i++, limit);
                q.setInt(i, offset);
                try (ResultSet rs = q.executeQuery()) {
                    while (rs.next()) {
                        items.add(task(rs));
                    }
                }
            }
            return new Page<>(total, limit, offset, items);
        }
    }

    public Optional<TaskDetail> task(long id) throws SQLException {
        try (Connection c = db.connection()) {
            Task t;
            try (PreparedStatement q = c.prepareStatement("SELECT " + TASK_COLUMNS + " FROM qc_task WHERE id = ?")) {
                q.setLong(1, id);
                try (ResultSet rs = q.executeQuery()) {
                    if (!rs.next()) {
                        return Optional.empty();
                    }
                    t = task(rs);
                }
            }
            return Optional.of(new TaskDetail(t, events(c, "WHERE task_id = ? ORDER BY id", List.of(id), Integer.MAX_VALUE)));
        }
    }

    /** The task-event feed after a cursor (the id of the last event seen), oldest first. */
    public List<TaskEvent> feed(long after, int limit) throws SQLException {
        try (Connection c = db.connection()) {
            return events(c, "WHERE id > ? ORDER BY id", List.of(after), limit);
        }
    }

    private List<TaskEvent> events(Connection c, String where, List<Object> args, int limit) throws SQLException {
        List<TaskEvent> out = new ArrayList<>();
        try (PreparedStatement q = c.prepareStatement("SELECT id, task_id, hospital, visit_id, kind, status, event_at, department, "
                + "doctor, recipients, detail FROM qc_task_event " + where + " LIMIT ?")) {
            int i = bind(q, args);
            q.setInt(i, limit);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    out.add(new TaskEvent(rs.getLong(1), rs.getLong(2), rs.getString(3), rs.getString(4), rs.getString(5),
                            rs.getString(6), TaskEngine.instant(rs, 7), rs.getString(8), rs.getString(9),
                            engine.list(rs.getString(10)), rs.getString(11)));
                }
            }
        }
        return out;
    }

    public Page<HeldEvent> held(int limit, int offset) throws SQLException {
        try (Connection c = db.connection()) {
            long total;
            try (PreparedStatement q = c.prepareStatement("SELECT COUNT(*) FROM qc_visit_event WHERE disposition = 'HELD'");
                    ResultSet rs = q.executeQuery()) {
                rs.next();
                total = rs.getLong(1);
            }
            List<HeldEvent> items = new ArrayList<>();
            try (PreparedStatement q = c.prepareStatement("SELECT id, event_id, hospital, visit_id, event_type, occurred_at, "
                    + "received_at, disposition_reason FROM qc_visit_event WHERE disposition = 'HELD' ORDER BY id LIMIT ? OFFSET ?")) {
                q.setInt(1, limit);
                q.setInt(2, offset);
                try (ResultSet rs = q.executeQuery()) {
                    while (rs.next()) {
                        items.add(new HeldEvent(rs.getLong(1), rs.getString(2), rs.getString(3), rs.getString(4), rs.getString(5),
                                TaskEngine.instant(rs, 6), TaskEngine.instant(rs, 7), rs.getString(8)));
                    }
                }
            }
            return new Page<>(total, limit, offset, items);
        }
    }

    /** The flows that end in a qc-sink (their dead letters are qc's failed events). */
    public Set<String> qcFlows() {
        Model model = camel.getCamelContextExtension().getContextPlugin(Model.class);
        Set<String> flows = new TreeSet<>();
        for (RouteDefinition rd : model.getRouteDefinitions()) {
            Map<String, Object> p = rd.getTemplateParameters();
            if (p != null && "qc-sink".equals(p.get("templateId")) && p.get("flowId") != null) {
                flows.add(String.valueOf(p.get("flowId")));
            }
        }
        return flows;
    }

    private String failedWhere(List<Object> args) {
        Set<String> flows = qcFlows();
        StringBuilder w = new StringBuilder("(event_type LIKE 'qc.%'");
        if (!flows.isEmpty()) {
            w.append(" OR flow IN (").append(String.join(", ", flows.stream().map(f -> "?").toList())).append(")");
            args.addAll(flows);
        }
        return w.append(")").toString();
    }

    /** Dead letters of qc events or qc flows: events refused by the task engine, or parked on the way to it. */
    public Page<FailedEvent> failed(String status, int limit, int offset) throws SQLException {
        List<Object> args = new ArrayList<>();
        String where = " WHERE " + failedWhere(args) + (status == null ? "" : " AND status = ?");
        if (status != null) {
            args.add(status);
        }
        try (Connection c = db.connection()) {
            long total;
            try (PreparedStatement q = c.prepareStatement("SELECT COUNT(*) FROM dead_letter" + where)) {
                bind(q, args);
                try (ResultSet rs = q.executeQuery()) {
                    rs.next();
                    total = rs.getLong(1);
                }
            }
            List<FailedEvent> items = new ArrayList<>();
            try (PreparedStatement q = c.prepareStatement("SELECT id, event_id, event_type, flow, error_class, error_message, "
                    + "attempts, last_failed_at, status, resolved_by, resolution_note FROM dead_letter" + where
                    + " ORDER BY id DESC LIMIT ? OFFSET ?")) {
                int i = bind(q, args);
                q.setInt(i++, limit);
                q.setInt(i, offset);
                try (ResultSet rs = q.executeQuery()) {
                    while (rs.next()) {
                        items.add(new FailedEvent(rs.getLong(1), rs.getString(2), rs.getString(3), rs.getString(4),
                                rs.getString(5), rs.getString(6), rs.getInt(7), TaskEngine.instant(rs, 8), rs.getString(9),
                                rs.getString(10), rs.getString(11)));
                    }
                }
            }
            return new Page<>(total, limit, offset, items);
        }
    }

    public boolean isFailedEvent(long deadLetterId) throws SQLException {
        List<Object> args = new ArrayList<>();
        args.add(deadLetterId);
        String where = " WHERE id = ? AND " + failedWhere(args);
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement("SELECT 1 FROM dead_letter" + where)) {
            bind(q, args);
            try (ResultSet rs = q.executeQuery()) {
                return rs.next();
            }
        }
    }

    public Page<AuditEntry> audit(String action, int limit, int offset) throws SQLException {
        String where = action == null ? "" : " WHERE action = ?";
        List<Object> args = action == null ? List.of() : List.of(action);
        try (Connection c = db.connection()) {
            long total;
            try (PreparedStatement q = c.prepareStatement("SELECT COUNT(*) FROM qc_audit" + where)) {
                bind(q, args);
                try (ResultSet rs = q.executeQuery()) {
                    rs.next();
                    total = rs.getLong(1);
                }
            }
            List<AuditEntry> items = new ArrayList<>();
            try (PreparedStatement q = c.prepareStatement("SELECT id, action_at, actor, action, hospital, visit_id, task_id, target, "
                    + "reason, effective_at, detail FROM qc_audit" + where + " ORDER BY id DESC LIMIT ? OFFSET ?")) {
                int i = bind(q, args);
                q.setInt(i++, limit);
                q.setInt(i, offset);
                try (ResultSet rs = q.executeQuery()) {
                    while (rs.next()) {
                        long task = rs.getLong(7);
                        Long taskId = rs.wasNull() ? null : task;
                        items.add(new AuditEntry(rs.getLong(1), TaskEngine.instant(rs, 2), rs.getString(3), rs.getString(4),
                                rs.getString(5), rs.getString(6), taskId, rs.getString(8), rs.getString(9),
                                TaskEngine.instant(rs, 10), rs.getString(11)));
                    }
                }
            }
            return new Page<>(total, limit, offset, items);
        }
    }

    /** Rules in force for a hospital, for display. */
    public List<Map<String, Object>> rules(RuleBook book, String hospital) {
        List<Map<String, Object>> out = new ArrayList<>();
        for (Rule r : book.rulesFor(hospital)) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("id", r.id());
            m.put("description", r.description());
            m.put("trigger", r.triggerEvent());
            m.put("when", r.when());
            m.put("document", r.document());
            m.put("deadline", RuleBook.text(r.deadline()));
            if (r.isRecurring()) {
                Map<String, Object> rec = new LinkedHashMap<>();
                rec.put("period", RuleBook.text(r.recurring().period()));
                Map<String, String> byLevel = new LinkedHashMap<>();
                r.recurring().periodByLevel().forEach((k, v) -> byLevel.put(k, RuleBook.text(v)));
                rec.put("periodByLevel", byLevel);
                rec.put("until", new TreeSet<>(r.recurring().until()));
                m.put("recurring", rec);
            }
            m.put("reminders", r.reminders().stream().map(RuleBook::text).toList());
            m.put("recipients", r.recipients());
            m.put("instanceKey", r.instanceKey());
            m.put("points", r.points());
            m.put("origin", r.origin());
            out.add(m);
        }
        return out;
    }

    private static int bind(PreparedStatement q, List<Object> args) throws SQLException {
        int i = 1;
        for (Object a : args) {
            q.setObject(i++, a);
        }
        return i;
    }
}
