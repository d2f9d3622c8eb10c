package org.hospitalhub.relay;

import static org.hospitalhub.ops.QueryParams.params;
import static org.hospitalhub.ops.QueryParams.single;

import java.sql.SQLException;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import jakarta.ws.rs.GET;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.core.Context;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.MultivaluedMap;
import jakarta.ws.rs.core.Response;
import jakarta.ws.rs.core.UriInfo;

import org.hospitalhub.ops.ApiKeyFilter;
import org.hospitalhub.ops.QueryParams.BadInput;

/**
 * The relay for operators (ApiKeyFilter: operator role): this node's status, the audit log of the packets that
 * passed the top server (read only: there is no method to change or delete it), the dead letters with their reason.
 * Lists page by {@code after} (the last id seen) and {@code limit}.
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
                return Response.status(404).entity(new ApiKeyFilter.ErrorBody(404, "node " + n.id()
                        + " keeps no audit log (the top server does; topology key 'audit')", null, null)).build();
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

    private static Map<String, Object> page(List<?> items, Long last, int limit) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("items", items);
        m.put("next", items.size() == limit ? last : null);
        return m;
    }

    private static Response notEnabled() {
        return Response.status(404).type(MediaType.APPLICATION_JSON).entity(new ApiKeyFilter.ErrorBody(404,
                "the relay is not enabled on this hub (hub.relay.enabled)", null, null)).build();
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
