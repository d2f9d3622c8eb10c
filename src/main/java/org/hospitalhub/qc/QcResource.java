package org.hospitalhub.qc;

import static org.hospitalhub.ops.QueryParams.params;
import static org.hospitalhub.ops.QueryParams.single;

import org.hospitalhub.ops.QueryParams.BadInput;
import java.sql.SQLException;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import jakarta.ws.rs.GET;
import jakarta.ws.rs.HeaderParam;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.PathParam;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.container.ContainerRequestContext;
import jakarta.ws.rs.core.Context;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.MultivaluedMap;
import jakarta.ws.rs.core.Response;
import jakarta.ws.rs.core.UriInfo;

import org.hospitalhub.delivery.DeadLetters;
import org.hospitalhub.ops.ApiKeyFilter;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * Time-limit quality control for operators (ApiKeyFilter lets only the operator role into /api/v1/qc): tasks and their
 * history, the task-event feed, close or cancel a task by hand with a reason, failed and held events and retrying the
 * failed ones, reconciliation on demand, statistics (JSON or CSV), the rules in force, the audit trail.
 */
@Path("/api/v1/qc")
@Produces(MediaType.APPLICATION_JSON)
public class QcResource {

    static final int MAX_LIMIT = 500;
    static final int MAX_REASON = 2000;

    private final TaskQueries queries;
    private final TaskEngine engine;
    private final Reconciliation reconciliation;
    private final QcStatistics statistics;
    private final RuleBook rules;
    private final DeadLetters deadLetters;
    private final QcClock clock;
    private final ObjectMapper mapper;

    public QcResource(TaskQueries queries, TaskEngine engine, Reconciliation reconciliation, QcStatistics statistics,
            RuleBook rules, DeadLetters deadLetters, QcClock clock, ObjectMapper mapper) {
        this.queries = queries;
        this.engine = engine;
        this.reconciliation = reconciliation;
        this.statistics = statistics;
        this.rules = rules;
        this.deadLetters = deadLetters;
        this.clock = clock;
        this.mapper = mapper;
    }

    private static Response error(int status, String message, String field, String rule) {
        return ApiKeyFilter.ErrorBody.response(status, message, field, rule);
    }

    private interface Call {
        Response run() throws SQLException;
    }

    private static Response handle(Call call) throws SQLException {
        try {
            return call.run();
        } catch (BadInput e) {
            return error(400, e.getMessage(), e.field, e.rule);
        }
    }

    // ---- Tasks -------------------------------------------------------------------------------------------------------

    @GET
    @Path("/tasks")
    public Response tasks(@Context UriInfo uri) throws SQLException {
        return handle(() -> {
            Set<String> filters = Set.of("hospital", "visit", "patient", "department", "doctor", "status", "documentType", "rule");
            MultivaluedMap<String, String> q = params(uri, union(filters, Set.of("limit", "offset")));
            Map<String, String> f = new LinkedHashMap<>();
            for (String name : new TreeSet<>(filters)) {
                String v = single(q, name);
                if (v != null) {
                    if (name.equals("status")) {
                        v = status(v).name();
                    }
                    f.put(name, v);
                }
            }
            return Response.ok(queries.tasks(f, limit(q), offset(q))).build();
        });
    }

    @GET
    @Path("/tasks/{id}")
    public Response task(@PathParam("id") String id) throws SQLException {
        return handle(() -> {
            long taskId = id(id, "task");
            return queries.task(taskId).map(t -> Response.ok(t).build())
                    .orElseGet(() -> error(404, "no task " + taskId, "id", null));
        });
    }

    /** Body {@code {"reason": "...", "completedAt": "<ISO-8601, default now>"}}: the document was written then. */
    @POST
    @Path("/tasks/{id}/close")
    public Response close(@PathParam("id") String id, String body, @Context ContainerRequestContext ctx) throws SQLException {
        return handle(() -> {
            long taskId = id(id, "task");
            JsonNode n = body(body);
            String reason = reason(n);
            Instant at = n.hasNonNull("completedAt") ? time("completedAt", n.get("completedAt").asText()) : clock.instant();
            return manual(taskId, "CLOSE", ApiKeyFilter.callerName(ctx), reason, at);
        });
    }

    /** Body {@code {"reason": "..."}}. */
    @POST
    @Path("/tasks/{id}/cancel")
    public Response cancel(@PathParam("id") String id, String body, @Context ContainerRequestContext ctx) throws SQLException {
        return handle(() -> {
            long taskId = id(id, "task");
            String reason = reason(body(body));
            return manual(taskId, "CANCEL", ApiKeyFilter.callerName(ctx), reason, clock.instant());
        });
    }

    private Response manual(long taskId, String action, String who, String reason, Instant at) throws SQLException {
        TaskEngine.ManualResult r = engine.manual(taskId, action, who, reason, at);
        return switch (r.outcome()) {
            case NOT_FOUND -> error(404, r.detail(), "id", null);
            case CONFLICT -> error(409, r.detail(), null, null);
            case DONE -> Response.ok(queries.task(taskId).orElseThrow()).build();
        };
    }

    /** What happened to tasks after a cursor (a task event id), oldest first: the feed a push channel replays. */
    @GET
    @Path("/task-events")
    public Response feed(@Context UriInfo uri) throws SQLException {
        return handle(() -> {
            MultivaluedMap<String, String> q = params(uri, Set.of("after", "limit"));
            long after = number(q, "after", 0, 0, Long.MAX_VALUE);
            List<TaskQueries.TaskEvent> events = queries.feed(after, limit(q));
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("after", after);
            out.put("next", events.isEmpty() ? after : events.get(events.size() - 1).id());
            out.put("items", events);
            return Response.ok(out).build();
        });
    }

    // ---- Correction ----------------------------------------------------------------------------------------------------

    @GET
    @Path("/held-events")
    public Response held(@Context UriInfo uri) throws SQLException {
        return handle(() -> {
            MultivaluedMap<String, String> q = params(uri, Set.of("limit", "offset"));
            return Response.ok(queries.held(limit(q), offset(q))).build();
        });
    }

    @GET
    @Path("/failed-events")
    public Response failed(@Context UriInfo uri) throws SQLException {
        return handle(() -> {
            MultivaluedMap<String, String> q = params(uri, Set.of("status", "limit", "offset"));
            String status = single(q, "status");
            if (status != null) {
                try {
                    status = DeadLetters.Status.valueOf(status.toUpperCase(Locale.ROOT)).name();
                } catch (IllegalArgumentException e) {
                    throw new BadInput("status", "enum", "status must be OPEN, REPLAYED or DISCARDED, got '" + status + "'");
                }
            }
            return Response.ok(queries.failed(status, limit(q), offset(q))).build();
        });
    }

    /** Retries a failed event (a dead letter of a qc flow) after a fix; body {@code {"reason": "..."}} required. */
    @POST
    @Path("/failed-events/{id}/retry")
    public Response retry(@PathParam("id") String id, String body, @Context ContainerRequestContext ctx) throws SQLException {
        return handle(() -> {
            long letter = id(id, "failed event");
            String reason = reason(body(body));
            if (!queries.isFailedEvent(letter)) {
                return error(404, "no failed qc event " + letter + " (see GET /api/v1/qc/failed-events)", "id", null);
            }
            String who = ApiKeyFilter.callerName(ctx);
            DeadLetters.Result r = deadLetters.replay(letter, who, reason);
            engine.audit(who, "RETRY", "dead-letter " + letter + " (event " + r.eventId() + ")", reason,
                    "{\"outcome\":\"" + r.outcome() + "\",\"detail\":" + mapper.valueToTree(r.detail()) + "}");
            return switch (r.outcome()) {
                case REQUEUED, DELIVERED -> Response.ok(r).build();
                case NOT_FOUND -> error(404, r.detail(), "id", null);
                case CONFLICT -> error(409, r.detail(), null, null);
                case NOT_REPLAYABLE -> error(422, r.detail(), null, null);
                default -> error(502, r.detail(), null, null);
            };
        });
    }

    @POST
    @Path("/reconcile")
    public Response reconcile(@Context ContainerRequestContext ctx, @Context UriInfo uri) throws SQLException {
        return handle(() -> {
            String scope = single(params(uri, Set.of("scope")), "scope");
            if (scope != null && !Set.of("full", "due").contains(scope)) {
                throw new BadInput("scope", "enum", "scope must be full (every live visit, the default) or due (visits "
                        + "with a task past its due time or an event not applied); got '" + scope + "'");
            }
            return Response.ok(reconciliation.run(ApiKeyFilter.callerName(ctx), "due".equals(scope)
                    ? Reconciliation.Scope.DUE : Reconciliation.Scope.FULL)).build();
        });
    }

    @GET
    @Path("/audit")
    public Response audit(@Context UriInfo uri) throws SQLException {
        return handle(() -> {
            MultivaluedMap<String, String> q = params(uri, Set.of("action", "limit", "offset"));
            String action = single(q, "action");
            Set<String> actions = Set.of("CLOSE", "CANCEL", "RETRY", "RECONCILE");
            if (action != null && !actions.contains(action.toUpperCase(Locale.ROOT))) {
                throw new BadInput("action", "enum", "action must be one of " + new TreeSet<>(actions) + ", got '" + action + "'");
            }
            return Response.ok(queries.audit(action == null ? null : action.toUpperCase(Locale.ROOT), limit(q), offset(q))).build();
        });
    }

    @GET
    @Path("/rules")
    public Response rules(@Context UriInfo uri) throws SQLException {
        return handle(() -> {
            MultivaluedMap<String, String> q = params(uri, Set.of("hospital"));
            String hospital = single(q, "hospital");
            if (hospital == null) {
                throw new BadInput("hospital", "required", "give the hospital code whose rules to show");
            }
            return Response.ok(Map.of("hospital", hospital, "rules", queries.rules(rules, hospital))).build();
        });
    }

    // ---- Statistics ----------------------------------------------------------------------------------------------------

    /**
     * Statistics of the tasks due in [from, to): {@code groupBy} department (default), doctor, documentType or period
     * (with {@code period} day, week or month); filters hospital, department, doctor, documentType. CSV with
     * {@code format=csv} or {@code Accept: text/csv}.
     */
    @GET
    @Path("/statistics")
    @Produces({ MediaType.APPLICATION_JSON, "text/csv" })
    public Response statistics(@Context UriInfo uri, @HeaderParam("Accept") String accept) throws SQLException {
        return handle(() -> {
            MultivaluedMap<String, String> q = params(uri, Set.of("groupBy", "period", "from", "to", "hospital", "department",
                    "doctor", "documentType", "format"));
            String g = single(q, "groupBy");
            QcStatistics.GroupBy groupBy = switch (g == null ? "department" : g) {
                case "department" -> QcStatistics.GroupBy.DEPARTMENT;
                case "doctor" -> QcStatistics.GroupBy.DOCTOR;
                case "documentType" -> QcStatistics.GroupBy.DOCUMENT_TYPE;
                case "period" -> QcStatistics.GroupBy.PERIOD;
                default -> throw new BadInput("groupBy", "enum", "groupBy must be department, doctor, documentType or period, got '" + g + "'");
            };
            String p = single(q, "period");
            QcStatistics.Period period = QcStatistics.Period.DAY;
            if (p != null) {
                try {
                    period = QcStatistics.Period.valueOf(p.toUpperCase(Locale.ROOT));
                } catch (IllegalArgumentException e) {
                    throw new BadInput("period", "enum", "period must be day, week or month, got '" + p + "'");
                }
            }
            String from = single(q, "from");
            String to = single(q, "to");
            if (from == null || to == null) {
                throw new BadInput(from == null ? "from" : "to", "required", "from and to are required: the window of due times, "
                        + "ISO-8601 with offset, e.g. from=2026-11-01T00:00:00+08:00&to=2026-12-01T00:00:00+08:00");
            }
            Instant f = time("from", from);
            Instant t = time("to", to);
            if (!f.isBefore(t)) {
                throw new BadInput("to", "range", "to must be later than from");
            }
            String format = single(q, "format");
            if (format != null && !format.equals("csv") && !format.equals("json")) {
                throw new BadInput("format", "enum", "format must be csv or json, got '" + format + "'");
            }
            QcStatistics.Report report = statistics.compute(groupBy, period, f, t, single(q, "hospital"), single(q, "department"),
                    single(q, "doctor"), single(q, "documentType"));
            boolean csv = "csv".equals(format) || (format == null && accept != null && accept.contains("text/csv"));
            if (csv) {
                return Response.ok(statistics.csv(report), "text/csv; charset=UTF-8")
                        .header("Content-Disposition", "attachment; filename=\"qc-statistics-" + report.groupBy() + ".csv\"").build();
            }
            return Response.ok(report, MediaType.APPLICATION_JSON).build();
        });
    }

    // ---- Input -----------------------------------------------------------------------------------------------------------

    private JsonNode body(String body) {
        if (body == null || body.isBlank()) {
            return mapper.createObjectNode();
        }
        try {
            JsonNode n = mapper.readTree(body);
            if (n != null && n.isObject()) {
                return n;
            }
        } catch (Exception e) {
            // answered below
        }
        throw new BadInput("body", "json", "the body must be a JSON object like {\"reason\": \"...\"}");
    }

    private static String reason(JsonNode n) {
        JsonNode r = n.get("reason");
        if (r == null || r.isNull() || (r.isTextual() && r.asText().isBlank())) {
            throw new BadInput("reason", "required", "reason is required: say why, e.g. {\"reason\": \"document written on "
                    + "paper during the EMR outage\"}");
        }
        if (!r.isTextual()) {
            throw new BadInput("reason", "type", "reason must be a string");
        }
        String s = r.asText().strip();
        if (s.length() > MAX_REASON) {
            throw new BadInput("reason", "maxLength", "reason must be at most " + MAX_REASON + " characters");
        }
        return s;
    }

    private static long id(String text, String what) {
        try {
            long id = Long.parseLong(text);
            if (id > 0) {
                return id;
            }
        } catch (NumberFormatException e) {
            // answered below
        }
        throw new BadInput("id", "type", "the " + what + " id must be a positive number, got '" + text + "'");
    }

    private static TaskStatus status(String v) {
        try {
            return TaskStatus.valueOf(v.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new BadInput("status", "enum", "status must be one of " + List.of(TaskStatus.values()) + ", got '" + v + "'");
        }
    }

    private static Instant time(String name, String v) {
        try {
            return OffsetDateTime.parse(v).toInstant();
        } catch (DateTimeParseException e) {
            throw new BadInput(name, "format", name + " must be an ISO-8601 date-time with offset, e.g. 2026-11-22T08:00:00+08:00; got '"
                    + v + "'");
        }
    }

    private static int limit(MultivaluedMap<String, String> q) {
        return (int) number(q, "limit", 50, 1, MAX_LIMIT);
    }

    private static int offset(MultivaluedMap<String, String> q) {
        return (int) number(q, "offset", 0, 0, Integer.MAX_VALUE);
    }

    private static long number(MultivaluedMap<String, String> q, String name, long fallback, long min, long max) {
        String v = single(q, name);
        if (v == null) {
            return fallback;
        }
        try {
            long n = Long.parseLong(v);
            if (n >= min && n <= max) {
                return n;
            }
        } catch (NumberFormatException e) {
            // answered below
        }
        throw new BadInput(name, "range", name + " must be a whole number from " + min + (max >= Integer.MAX_VALUE ? " up" : " to " + max)
                + ", got '" + v + "'");
    }

    private static Set<String> union(Set<String> a, Set<String> b) {
        Set<String> u = new TreeSet<>(a);
        u.addAll(b);
        return u;
    }
}
