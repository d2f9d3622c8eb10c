package org.hospitalhub.relay;

import static org.hospitalhub.ops.QueryParams.deadLetterId;
import static org.hospitalhub.ops.QueryParams.params;
import static org.hospitalhub.ops.QueryParams.single;

import java.sql.SQLException;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

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

import org.hospitalhub.ops.ApiKeyFilter;
import org.hospitalhub.ops.QueryParams.BadInput;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * The relay for operators (ApiKeyFilter: operator role): this node's status, the audit log of the packets that
 * passed the top server (read only: there is no method to change or delete it), the dead letters with their reason,
 * and their replay. Lists page by {@code after} (the last id seen) and {@code limit}.
 */
@Path("/api/v1/relay")
@Produces(MediaType.APPLICATION_JSON)
public class RelayResource {

    static final int DEFAULT_LIMIT = 100;
    static final int MAX_LIMIT = 1000;

    private final RelayApp app;

    public RelayResource(RelayApp app) {
        this.app = app;
    }

    @GET
    @Path("/status")
    public Response status() throws SQLException {
        RelayNode n = app.node().orElse(null);
        return n == null ? notEnabled() : Response.ok(n.status()).build();
    }

    @GET
    @Path("/audit")
    public Response audit(@Context UriInfo uri) throws SQLException {
        RelayNode n = app.node().orElse(null);
        if (n == null) {
            return notEnabled();
        }
        try {
            MultivaluedMap<String, String> q = params(uri, Set.of("from", "to", "command", "since", "until", "after", "limit"));
            if (!n.topology().audit()) {
                return ApiKeyFilter.ErrorBody.response(404, "node " + n.id()
                        + " keeps no audit log (the top server does; topology key 'audit')", null, null);
            }
            int limit = (int) number(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT);
            List<PacketStore.Audit> rows = n.audit(single(q, "from"), single(q, "to"), single(q, "command"),
                    time(q, "since"), time(q, "until"), number(q, "after", 0, 0, Long.MAX_VALUE), limit);
            return Response.ok(page(rows, rows.isEmpty() ? null : rows.get(rows.size() - 1).id(), limit)).build();
        } catch (BadInput e) {
            return e.response();
        }
    }

    @GET
    @Path("/dead-letters")
    public Response deadLetters(@Context UriInfo uri) throws SQLException {
        RelayNode n = app.node().orElse(null);
        if (n == null) {
            return notEnabled();
        }
        try {
            MultivaluedMap<String, String> q = params(uri, Set.of("from", "to", "after", "limit"));
            int limit = (int) number(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT);
            List<PacketStore.Dead> rows = n.deadLetters(single(q, "to"), single(q, "from"),
                    number(q, "after", 0, 0, Long.MAX_VALUE), limit);
            return Response.ok(page(rows, rows.isEmpty() ? null : rows.get(rows.size() - 1).id(), limit)).build();
        } catch (BadInput e) {
            return e.response();
        }
    }

    /**
     * Replays one dead letter: back in the queue of the hop it died waiting for, at its end, with a new ttl
     * ({@link RelayNode#replay}). The ttl, seconds from now, as a query parameter {@code ttl=3600} or in a JSON body
     * {@code {"ttl": 3600}}; without one, the time the packet was last given.
     */
    @POST
    @Path("/dead-letters/{id}/replay")
    public Response replay(@PathParam("id") String idText, @Context UriInfo uri, String body,
            @Context ContainerRequestContext ctx) throws SQLException {
        RelayNode n = app.node().orElse(null);
        if (n == null) {
            return notEnabled();
        }
        try {
            MultivaluedMap<String, String> q = params(uri, Set.of("ttl"));
            long id = deadLetterId(idText);
            return Response.ok(n.replay(id, ttl(q, body), ApiKeyFilter.callerName(ctx))).build();
        } catch (BadInput e) {
            return e.response();
        } catch (Refusal r) {
            return refused(r);
        }
    }

    /**
     * Replays the dead letters the list would show for {@code to} / {@code from} (at least one of them, or
     * {@code all=true}), oldest first, after {@code after}, up to {@code limit}, each as {@link #replay} does; answers
     * how many were replayed, those skipped with the reason, and {@code next} to page on.
     */
    @POST
    @Path("/dead-letters/replay")
    public Response replayAll(@Context UriInfo uri, String body, @Context ContainerRequestContext ctx) throws SQLException {
        RelayNode n = app.node().orElse(null);
        if (n == null) {
            return notEnabled();
        }
        try {
            MultivaluedMap<String, String> q = params(uri, Set.of("from", "to", "after", "limit", "all", "ttl"));
            String all = single(q, "all");
            if (all != null && !all.equals("true") && !all.equals("false")) {
                throw new BadInput("all", "type", "all must be true or false, got '" + all + "'");
            }
            if (single(q, "to") == null && single(q, "from") == null && !"true".equals(all)) {
                throw new BadInput("all", "required", "give to or from (as the dead-letter list takes them), or all=true "
                        + "to replay every dead letter");
            }
            int limit = (int) number(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT);
            return Response.ok(n.replayAll(single(q, "to"), single(q, "from"), number(q, "after", 0, 0, Long.MAX_VALUE), limit,
                    ttl(q, body), ApiKeyFilter.callerName(ctx))).build();
        } catch (BadInput e) {
            return e.response();
        }
    }

    private static final String TTL_FORM = "ttl is a positive whole number of seconds from now (as packets give ttl), "
            + "e.g. ttl=3600 or {\"ttl\": 3600}";

    /** The replay's ttl in seconds, from the query or a JSON body {@code {"ttl": N}} (not both); null when neither. */
    private static Long ttl(MultivaluedMap<String, String> q, String body) {
        Long fromBody = null;
        if (body != null && !body.isBlank()) {
            JsonNode b;
            try {
                b = HttpEndpoint.JSON.readTree(body);
            } catch (Exception e) {
                throw new BadInput("body", "json", "the body must be a JSON object like {\"ttl\": 3600}, or empty");
            }
            if (b == null || !b.isObject()) {
                throw new BadInput("body", "json", "the body must be a JSON object like {\"ttl\": 3600}, or empty");
            }
            for (Iterator<String> names = b.fieldNames(); names.hasNext();) {
                String name = names.next();
                if (!name.equals("ttl")) {
                    throw new BadInput(name, "unknown", "unknown field '" + name + "' (the body takes ttl only)");
                }
            }
            JsonNode t = b.get("ttl");
            if (t != null && !t.isNull()) {
                if (!t.isIntegralNumber() || !t.canConvertToLong() || t.asLong() <= 0) {
                    throw new BadInput("ttl", "positive-integer", TTL_FORM + "; got " + t);
                }
                fromBody = t.asLong();
            }
        }
        String v = single(q, "ttl");
        if (v == null) {
            return fromBody;
        }
        if (fromBody != null) {
            throw new BadInput("ttl", "single", "give ttl in the query or in the body, not both");
        }
        try {
            long t = Long.parseLong(v);
            if (t > 0) {
                return t;
            }
        } catch (NumberFormatException e) {
            // answered below
        }
        throw new BadInput("ttl", "positive-integer", TTL_FORM + "; got '" + v + "'");
    }

    private static Response refused(Refusal r) {
        return ApiKeyFilter.ErrorBody.response(r.status(), r.getMessage(), r.field(), r.rule());
    }

    private static Map<String, Object> page(List<?> items, Long last, int limit) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("items", items);
        m.put("next", items.size() == limit ? last : null);
        return m;
    }

    private static Response notEnabled() {
        return ApiKeyFilter.ErrorBody.response(404, "the relay is not enabled on this hub (hub.relay.enabled)", null, null);
    }

    private static long number(MultivaluedMap<String, String> q, String name, long dflt, long min, long max) {
        String v = single(q, name);
        if (v == null) {
            return dflt;
        }
        try {
            long n = Long.parseLong(v);
            if (n < min || n > max) {
                throw new BadInput(name, "range", name + " must be between " + min + " and " + max);
            }
            return n;
        } catch (NumberFormatException e) {
            throw new BadInput(name, "integer", name + " must be an integer, got '" + v + "'");
        }
    }

    private static Instant time(MultivaluedMap<String, String> q, String name) {
        String v = single(q, name);
        if (v == null) {
            return null;
        }
        try {
            return OffsetDateTime.parse(v).toInstant();
        } catch (DateTimeParseException e) {
            throw new BadInput(name, "format", name + " must be an ISO-8601 date-time with offset, got '" + v + "'");
        }
    }
}
