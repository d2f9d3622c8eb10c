package org.hospitalhub.ops;

import static org.hospitalhub.ops.QueryParams.deadLetterId;
import static org.hospitalhub.ops.QueryParams.params;
import static org.hospitalhub.ops.QueryParams.single;

import org.hospitalhub.ops.QueryParams.BadInput;
import java.sql.SQLException;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.TreeSet;

import jakarta.ws.rs.GET;
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
import org.hospitalhub.delivery.DeadLetters.Filter;
import org.hospitalhub.delivery.DeadLetters.Outcome;
import org.hospitalhub.delivery.DeadLetters.Result;
import org.hospitalhub.delivery.DeadLetters.Status;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * Dead letters for operators (ApiKeyFilter lets only the operator role in): list with filters and paging, show one,
 * replay one or a filtered set, discard one with a reason. Every change records the caller's name.
 */
@Path("/api/v1/dead-letters")
@Produces(MediaType.APPLICATION_JSON)
public class DeadLettersResource {

    static final int DEFAULT_LIMIT = 50;
    static final int MAX_LIMIT = 500;
    static final int MAX_REASON = 2000;
    private static final Set<String> FILTERS = Set.of("flow", "type", "error", "status", "from", "to");
    private static final Set<String> LIST_PARAMS = union(FILTERS, Set.of("limit", "offset", "cursor"));
    private static final Set<String> REPLAY_PARAMS = union(FILTERS, Set.of("limit", "all"));

    private final DeadLetters letters;
    private final ObjectMapper mapper;

    public DeadLettersResource(DeadLetters letters, ObjectMapper mapper) {
        this.letters = letters;
        this.mapper = mapper;
    }

    @GET
    public Response list(@Context UriInfo uri) throws SQLException {
        try {
            MultivaluedMap<String, String> q = params(uri, LIST_PARAMS);
            Filter filter = filter(q);
            int limit = (int) number(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT);
            String offsetText = single(q, "offset");
            String cursorText = single(q, "cursor");
            if (offsetText != null && cursorText != null) {
                throw new BadInput("cursor", "exclusive", "give offset or cursor, not both");
            }
            Integer offset = offsetText == null ? null : (int) number(q, "offset", 0, 0, Integer.MAX_VALUE);
            Long cursor = cursorText == null ? null : number(q, "cursor", 0, 1, Long.MAX_VALUE);
            return Response.ok(letters.list(filter, limit, offset, cursor)).build();
        } catch (BadInput e) {
            return e.response();
        }
    }

    @GET
    @Path("/{id}")
    public Response show(@PathParam("id") String idText) throws SQLException {
        try {
            long id = deadLetterId(idText);
            return letters.find(id).map(l -> Response.ok(l).build())
                    .orElseGet(() -> error(404, "no dead letter " + id, "id"));
        } catch (BadInput e) {
            return e.response();
        }
    }

    /** Replays one letter. Body optional: {@code {"reason": "..."}}. */
    @POST
    @Path("/{id}/replay")
    public Response replay(@PathParam("id") String idText, String body, @Context ContainerRequestContext ctx) throws SQLException {
        try {
            long id = deadLetterId(idText);
            String reason = reason(body, false);
            Result r = letters.replay(id, ApiKeyFilter.callerName(ctx), reason);
            return switch (r.outcome()) {
                case REQUEUED, DELIVERED -> Response.ok(r).build();
                case NOT_FOUND -> error(404, r.detail(), "id");
                case CONFLICT -> error(409, r.detail(), null);
                case NOT_REPLAYABLE -> error(422, r.detail(), null);
                case FAILED -> error(502, r.detail(), null);
                default -> throw new IllegalStateException("unexpected replay outcome " + r.outcome());
            };
        } catch (BadInput e) {
            return e.response();
        }
    }

    /**
     * Replays the OPEN letters matching the list filters (query parameters), oldest first, up to {@code limit}.
     * At least one filter or {@code all=true} is required, so that nobody replays everything by accident.
     */
    @POST
    @Path("/replay")
    public Response replayMatching(@Context UriInfo uri, String body, @Context ContainerRequestContext ctx) throws SQLException {
        try {
            MultivaluedMap<String, String> q = params(uri, REPLAY_PARAMS);
            Filter filter = filter(q);
            if (filter.status() != null && filter.status() != Status.OPEN) {
                throw new BadInput("status", "enum", "only OPEN dead letters can be replayed; leave status out or give OPEN");
            }
            String all = single(q, "all");
            if (all != null && !all.equals("true") && !all.equals("false")) {
                throw new BadInput("all", "type", "all must be true or false, got '" + all + "'");
            }
            if (!filter.narrows() && !"true".equals(all)) {
                throw new BadInput("all", "required", "give at least one filter (flow, type, error, from, to) "
                        + "or all=true to replay every open dead letter");
            }
            int limit = (int) number(q, "limit", MAX_LIMIT, 1, MAX_LIMIT);
            String reason = reason(body, false);
            return Response.ok(letters.replay(filter, limit, ApiKeyFilter.callerName(ctx), reason)).build();
        } catch (BadInput e) {
            return e.response();
        }
    }

    /** Discards one letter; body {@code {"reason": "..."}} is required. */
    @POST
    @Path("/{id}/discard")
    public Response discard(@PathParam("id") String idText, String body, @Context ContainerRequestContext ctx) throws SQLException {
        try {
            long id = deadLetterId(idText);
            String reason = reason(body, true);
            Result r = letters.discard(id, ApiKeyFilter.callerName(ctx), reason);
            if (r.outcome() == Outcome.NOT_FOUND) {
                return error(404, r.detail(), "id");
            }
            if (r.outcome() == Outcome.CONFLICT) {
                return error(409, r.detail(), null);
            }
            return Response.ok(letters.find(id).orElseThrow()).build();
        } catch (BadInput e) {
            return e.response();
        }
    }

    // ---- Input -----------------------------------------------------------------------------------------------------

    /** The reason of a JSON body {@code {"reason": "..."}}; an empty body is no reason. */
    private String reason(String body, boolean required) {
        String reason = null;
        if (body != null && !body.isBlank()) {
            JsonNode n;
            try {
                n = mapper.readTree(body);
            } catch (Exception e) {
                throw new BadInput("reason", "json", "the body must be a JSON object like {\"reason\": \"...\"}");
            }
            if (n == null || !n.isObject()) {
                throw new BadInput("reason", "json", "the body must be a JSON object like {\"reason\": \"...\"}");
            }
            JsonNode r = n.get("reason");
            if (r != null && !r.isNull()) {
                if (!r.isTextual()) {
                    throw new BadInput("reason", "type", "reason must be a string");
                }
                reason = r.asText().strip();
            }
        }
        if (reason == null || reason.isEmpty()) {
            if (required) {
                throw new BadInput("reason", "required", "reason is required: say why this dead letter is discarded, "
                        + "e.g. {\"reason\": \"duplicate of voucher V-17, corrected in finance\"}");
            }
            return null;
        }
        if (reason.length() > MAX_REASON) {
            throw new BadInput("reason", "maxLength", "reason must be at most " + MAX_REASON + " characters");
        }
        return reason;
    }

    private static Filter filter(MultivaluedMap<String, String> q) {
        Status status = null;
        String s = single(q, "status");
        if (s != null) {
            try {
                status = Status.valueOf(s.toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new BadInput("status", "enum", "status must be OPEN, REPLAYED or DISCARDED, got '" + s + "'");
            }
        }
        Instant from = time(q, "from");
        Instant to = time(q, "to");
        if (from != null && to != null && !from.isBefore(to)) {
            throw new BadInput("to", "range", "to must be later than from");
        }
        return new Filter(single(q, "flow"), single(q, "type"), single(q, "error"), status, from, to);
    }

    private static Instant time(MultivaluedMap<String, String> q, String name) {
        String v = single(q, name);
        if (v == null) {
            return null;
        }
        try {
            return OffsetDateTime.parse(v).toInstant();
        } catch (DateTimeParseException e) {
            throw new BadInput(name, "format", name + " must be an ISO-8601 date-time with offset, "
                    + "e.g. 2026-11-22T08:00:00+08:00 or 2026-11-22T00:00:00Z; got '" + v + "'");
        }
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
        throw new BadInput(name, "range", name + " must be a whole number from " + min
                + (max >= Integer.MAX_VALUE ? " up" : " to " + max) + ", got '" + v + "'");
    }

    private static Response error(int status, String message, String field) {
        return ApiKeyFilter.ErrorBody.response(status, message, field, null);
    }

    private static Set<String> union(Set<String> a, Set<String> b) {
        Set<String> u = new TreeSet<>(a);
        u.addAll(b);
        return Set.copyOf(u);
    }
}
