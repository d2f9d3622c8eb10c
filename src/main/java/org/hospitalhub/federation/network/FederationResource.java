package org.hospitalhub.federation.network;

import java.io.StringWriter;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

import jakarta.ws.rs.Consumes;
import jakarta.ws.rs.DELETE;
import jakarta.ws.rs.GET;
import jakarta.ws.rs.HeaderParam;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.PUT;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.PathParam;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.QueryParam;
import jakarta.ws.rs.container.ContainerRequestContext;
import jakarta.ws.rs.core.Context;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.hospitalhub.federation.study.ResultPooling;
import org.hospitalhub.ops.ApiKeyFilter;
import org.jboss.resteasy.reactive.RestStreamElementType;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import io.smallrye.common.annotation.Blocking;
import io.smallrye.mutiny.Multi;

/**
 * Operator API of the research network under {@code /api/v1/federation} (operator role, see ApiKeyFilter): this node,
 * its peers, projects, invitations, steps, their status on every node (also as a server-sent-event stream), results
 * per node (JSON or CSV), the outbox (resend) and the rejected inbound messages.
 */
@Path("/api/v1/federation")
@Produces(MediaType.APPLICATION_JSON)
@Blocking
public class FederationResource {

    private final NodeIdentity identity;
    private final Peers peers;
    private final Projects projects;
    private final FederationOutbox outbox;
    private final Inbox inbox;
    private final StatusFeed feed;
    private final ObjectMapper mapper;
    private final Optional<String> relayNode;

    public FederationResource(NodeIdentity identity, Peers peers, Projects projects, FederationOutbox outbox, Inbox inbox,
            StatusFeed feed, ObjectMapper mapper, @ConfigProperty(name = "hub.federation.relay-node") Optional<String> relayNode) {
        this.identity = identity;
        this.peers = peers;
        this.projects = projects;
        this.outbox = outbox;
        this.inbox = inbox;
        this.feed = feed;
        this.mapper = mapper;
        this.relayNode = relayNode.map(String::strip).filter(s -> !s.isEmpty());
    }

    @GET
    @Path("/node")
    public Response node() {
        return guarded(() -> {
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("nodeId", identity.nodeId());
            out.put("publicKey", identity.publicKey());
            out.put("relayNode", relayNode.orElse(null));
            return Response.ok(out).build();
        });
    }

    @GET
    @Path("/nodes")
    public Response nodes() {
        return guarded(() -> Response.ok(peers.all()).build());
    }

    @PUT
    @Path("/nodes/{nodeId}")
    @Consumes(MediaType.APPLICATION_JSON)
    public Response putNode(@PathParam("nodeId") String nodeId, String body) {
        return guarded(() -> {
            JsonNode b = json(body);
            String url = b.path("baseUrl").asText(null);
            String key = b.path("publicKey").asText(null);
            String problem = Peers.check(nodeId, url, key);
            if (problem != null) {
                String field = problem.substring(0, problem.indexOf(' ') < 0 ? problem.length() : problem.indexOf(' '));
                throw new Projects.InvalidRequest(400, field.replace(":", ""), problem);
            }
            if (b.has("autoAccept") && !b.get("autoAccept").isBoolean()) {
                throw new Projects.InvalidRequest(400, "autoAccept", "must be true or false");
            }
            if (nodeId.equals(identity.nodeId())) {
                throw new Projects.InvalidRequest(400, "nodeId", "that is this node itself");
            }
            peers.save(new Peers.Peer(nodeId, url, key, b.path("autoAccept").asBoolean(false), "api", null));
            return Response.ok(peers.find(nodeId).orElseThrow()).build();
        });
    }

    @DELETE
    @Path("/nodes/{nodeId}")
    public Response deleteNode(@PathParam("nodeId") String nodeId) {
        return guarded(() -> peers.delete(nodeId) ? Response.noContent().build()
                : error(404, "nodeId", "no node " + nodeId));
    }

    @POST
    @Path("/projects")
    @Consumes(MediaType.APPLICATION_JSON)
    public Response create(String body, @HeaderParam("Idempotency-Key") String idempotencyKey,
            @Context ContainerRequestContext ctx) {
        return guarded(() -> {
            Projects.Created made = projects.create(json(body), ApiKeyFilter.callerName(ctx), idempotencyKey);
            // a repeat of a request with the same Idempotency-Key: the project made the first time, nothing new
            return made.replayed() ? Response.ok(made.project()).header("Idempotent-Replayed", "true").build()
                    : Response.status(201).entity(made.project()).build();
        });
    }

    @GET
    @Path("/projects")
    public Response list() {
        return guarded(() -> Response.ok(projects.list()).build());
    }

    @GET
    @Path("/projects/{projectId}")
    public Response project(@PathParam("projectId") String projectId) {
        return guarded(() -> Response.ok(projects.details(projectId)).build());
    }

    @POST
    @Path("/projects/{projectId}/accept")
    public Response accept(@PathParam("projectId") String projectId, @Context ContainerRequestContext ctx) {
        return guarded(() -> Response.ok(projects.decide(projectId, true, ApiKeyFilter.callerName(ctx))).build());
    }

    @POST
    @Path("/projects/{projectId}/decline")
    public Response decline(@PathParam("projectId") String projectId, @Context ContainerRequestContext ctx) {
        return guarded(() -> Response.ok(projects.decide(projectId, false, ApiKeyFilter.callerName(ctx))).build());
    }

    @POST
    @Path("/projects/{projectId}/steps")
    @Consumes(MediaType.APPLICATION_JSON)
    public Response addStep(@PathParam("projectId") String projectId, String body) {
        return guarded(() -> {
            Projects.Added added = projects.addStep(projectId, json(body));
            return Response.status(201).entity(projects.stepDetails(added)).build();
        });
    }

    @GET
    @Path("/projects/{projectId}/steps/{stepId}")
    public Response step(@PathParam("projectId") String projectId, @PathParam("stepId") String stepId) {
        return guarded(() -> Response.ok(projects.stepDetails(projectId, stepId)).build());
    }

    /** Runs a failed step again: on this node, or (on the initiator, {@code ?node=}) on that node. */
    @POST
    @Path("/projects/{projectId}/steps/{stepId}/retry")
    public Response retry(@PathParam("projectId") String projectId, @PathParam("stepId") String stepId,
            @QueryParam("node") String node) {
        return guarded(() -> {
            projects.requestRetry(projectId, stepId, node == null || node.isBlank() ? null : node.strip());
            return Response.accepted(Map.of("stepId", stepId, "node", node == null ? identity.nodeId() : node)).build();
        });
    }

    /** Results of a step per node: JSON, or CSV ({@code format=csv} or {@code Accept: text/csv}), one row per node. */
    @GET
    @Path("/projects/{projectId}/steps/{stepId}/results")
    @Produces({ MediaType.APPLICATION_JSON, "text/csv" })
    public Response results(@PathParam("projectId") String projectId, @PathParam("stepId") String stepId,
            @QueryParam("format") String format, @HeaderParam("Accept") String accept) {
        return guarded(() -> {
            projects.stepDetails(projectId, stepId); // 404 for an unknown step
            Map<String, JsonNode> results = projects.results(projectId, stepId);
            if (wantsCsv(format, accept)) {
                return Response.ok(csv(results), "text/csv; charset=UTF-8").build();
            }
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("stepId", stepId);
            out.put("nodes", results);
            return Response.ok(out).build();
        });
    }

    /**
     * The step's results pooled across the nodes that returned one, exactly, from their sufficient statistics
     * ({@link ResultPooling}): JSON with the per-node results, the pooled figures and the nodes included, or CSV.
     */
    @GET
    @Path("/projects/{projectId}/steps/{stepId}/pooled")
    @Produces({ MediaType.APPLICATION_JSON, "text/csv" })
    public Response pooled(@PathParam("projectId") String projectId, @PathParam("stepId") String stepId,
            @QueryParam("format") String format, @HeaderParam("Accept") String accept) {
        return guarded(() -> {
            projects.stepDetails(projectId, stepId);
            Map<String, JsonNode> results = projects.results(projectId, stepId);
            if (results.isEmpty()) {
                return error(404, "stepId", "no node has returned a result of step " + stepId + " yet");
            }
            com.fasterxml.jackson.databind.node.ObjectNode pooled = ResultPooling.pool(results);
            if (wantsCsv(format, accept)) {
                return Response.ok(ResultPooling.csv(pooled), "text/csv; charset=UTF-8").build();
            }
            return Response.ok(pooled).build();
        });
    }

    /** Status changes of the project's steps on every node, pushed as they happen (server-sent events). */
    @GET
    @Path("/projects/{projectId}/events")
    @Produces(MediaType.SERVER_SENT_EVENTS)
    @RestStreamElementType(MediaType.APPLICATION_JSON)
    public Multi<Executions.Execution> events(@PathParam("projectId") String projectId) {
        return feed.project(projectId);
    }

    @GET
    @Path("/outbox")
    public Response outbox(@QueryParam("destination") String destination, @QueryParam("status") String status,
            @QueryParam("limit") Integer limit) {
        return guarded(() -> {
            if (status != null && !Set.of("PENDING", "ACKED", "DEAD").contains(status)) {
                throw new Projects.InvalidRequest(400, "status", "must be PENDING, ACKED or DEAD");
            }
            int l = limit == null ? 200 : limit;
            if (l < 1 || l > 1000) {
                throw new Projects.InvalidRequest(400, "limit", "must be between 1 and 1000");
            }
            return Response.ok(outbox.list(destination, status, l)).build();
        });
    }

    /** Body (optional) {@code {"destination": "...", "messageIds": [...]}}: sends those again now, in order. */
    @POST
    @Path("/outbox/resend")
    @Consumes({ MediaType.APPLICATION_JSON, MediaType.WILDCARD })
    public Response resend(String body) {
        return guarded(() -> {
            JsonNode b = body == null || body.isBlank() ? mapper.createObjectNode() : json(body);
            String destination = b.hasNonNull("destination") ? b.get("destination").asText() : null;
            List<String> ids = new ArrayList<>();
            JsonNode m = b.get("messageIds");
            if (m != null && !m.isNull()) {
                if (!m.isArray()) {
                    throw new Projects.InvalidRequest(400, "messageIds", "must be an array of message ids");
                }
                m.forEach(n -> ids.add(n.asText()));
            }
            return Response.ok(Map.of("resent", outbox.resend(destination, ids))).build();
        });
    }

    @GET
    @Path("/rejections")
    public Response rejections(@QueryParam("limit") Integer limit) {
        return guarded(() -> Response.ok(inbox.rejections(limit == null ? 100 : limit)).build());
    }

    // ---- helpers ---------------------------------------------------------------------------------------------------

    static boolean wantsCsv(String format, String accept) {
        return "csv".equalsIgnoreCase(format) || (format == null && accept != null && accept.contains("text/csv"));
    }

    /** One row per node; columns are the result's top-level scalar fields, nested values as JSON text. */
    static String csv(Map<String, JsonNode> results) {
        Set<String> columns = new LinkedHashSet<>();
        results.values().forEach(r -> r.fieldNames().forEachRemaining(columns::add));
        StringWriter w = new StringWriter();
        w.append("node");
        for (String c : columns) {
            w.append(',').append(cell(c));
        }
        w.append('\n');
        results.forEach((node, r) -> {
            w.append(cell(node));
            for (String c : columns) {
                JsonNode v = r.get(c);
                w.append(',').append(v == null || v.isNull() ? "" : cell(v.isValueNode() ? v.asText() : v.toString()));
            }
            w.append('\n');
        });
        return w.toString();
    }

    static String cell(String s) {
        String t = s;
        if (!t.isEmpty() && "=+-@".indexOf(t.charAt(0)) >= 0 && !t.matches("-?[0-9.eE+-]+")) {
            t = "'" + t; // no formula injection in spreadsheets
        }
        if (t.contains(",") || t.contains("\"") || t.contains("\n")) {
            t = "\"" + t.replace("\"", "\"\"") + "\"";
        }
        return t;
    }

    private JsonNode json(String body) {
        try {
            JsonNode n = mapper.readTree(body == null ? "" : body);
            if (n == null || !n.isObject()) {
                throw new Projects.InvalidRequest(400, "$", "body must be a JSON object");
            }
            return n;
        } catch (JsonProcessingException e) {
            throw new Projects.InvalidRequest(400, "$", "body is not valid JSON");
        }
    }

    @FunctionalInterface
    private interface Work {
        Response run() throws SQLException;
    }

    private static Response guarded(Work work) {
        try {
            return work.run();
        } catch (Projects.InvalidRequest e) {
            return error(e.status, e.field, e.getMessage());
        } catch (Inbox.Refusal e) {
            return error(e.status, e.field, e.getMessage());
        } catch (NodeIdentity.FederationDisabledException e) {
            return error(503, null, e.getMessage());
        } catch (SQLException e) {
            return error(503, null, "database unavailable: " + e.getMessage());
        }
    }

    static Response error(int status, String field, String message) {
        return ApiKeyFilter.ErrorBody.response(status, message, field, null);
    }
}
