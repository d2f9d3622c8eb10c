package org.hospitalhub.sync;

import java.sql.SQLException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import jakarta.ws.rs.Consumes;
import jakarta.ws.rs.DefaultValue;
import jakarta.ws.rs.GET;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.PathParam;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.QueryParam;
import jakarta.ws.rs.container.ContainerRequestContext;
import jakarta.ws.rs.core.Context;
import jakarta.ws.rs.core.HttpHeaders;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import org.hospitalhub.delivery.Event;
import org.hospitalhub.delivery.EventParser;
import org.hospitalhub.delivery.EventStore;
import org.hospitalhub.delivery.Flow;
import org.hospitalhub.delivery.FlowRegistry;
import org.hospitalhub.delivery.XmlEventReader;
import org.hospitalhub.ops.ApiKeyFilter;
import org.hospitalhub.ops.Callers;
import org.jboss.logging.Logger;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;

/**
 * The gateway a hospital's HIS calls instead of a legacy synchronous web service, so that a flow moves from the old
 * call to the hub's async delivery caller by caller (the gray switch, {@link GraySwitchConfig}). Per request the
 * flow's mode for the caller decides: legacy (proxy unchanged), shadow (proxy, and store the event too, counting
 * disagreements) or async (store and answer 202, like /api/v1/events). The answer carries the mode in
 * {@code X-Hub-Gray-Mode}.
 */
@Path("/api/v1/gateway")
public class GatewayResource {

    private static final Logger LOG = Logger.getLogger(GatewayResource.class);

    public static final String MODE_HEADER = "X-Hub-Gray-Mode";
    /** The request headers a legacy web service may need; the hub's own credentials are never forwarded. */
    static final List<String> FORWARDED_HEADERS = List.of("Content-Type", "SOAPAction", "Accept");

    private final GraySwitchConfig gray;
    private final LegacyProxy legacy;
    private final EventParser parser;
    private final XmlEventReader xml;
    private final EventStore store;
    private final FlowRegistry flows;
    private final GrayMismatches mismatches;
    private final MeterRegistry registry;

    public GatewayResource(GraySwitchConfig gray, LegacyProxy legacy, EventParser parser, XmlEventReader xml,
            EventStore store, FlowRegistry flows, GrayMismatches mismatches, MeterRegistry registry) {
        this.gray = gray;
        this.legacy = legacy;
        this.parser = parser;
        this.xml = xml;
        this.store = store;
        this.flows = flows;
        this.mismatches = mismatches;
        this.registry = registry;
    }

    @POST
    @Path("{flowId}")
    @Consumes(MediaType.WILDCARD)
    public Response post(@PathParam("flowId") String flowId, byte[] body, @Context HttpHeaders headers,
            @Context ContainerRequestContext ctx) throws SQLException {
        Callers.Caller caller = (Callers.Caller) ctx.getProperty(ApiKeyFilter.CALLER);
        GrayFlow flow = gray.flow(flowId).orElse(null);
        if (flow == null) {
            return error(404, "no gray switch is configured for flow '" + flowId + "' (hub.gray." + flowId + ".mode)",
                    null, "gray-flow");
        }
        GatewayRequest req = GatewayRequest.read(body, headers.getMediaType(), parser, xml, caller.name());
        GrayFlow.Decision decision = flow.decide(req.hospital, req.source);
        LOG.debugf("Gateway %s: hospital %s, source %s -> %s", flow.id(), req.hospital, req.source, decision.reason());
        Counter.builder("hub.gray.requests").description("Gateway requests by the gray mode that served them")
                .tags("flow", flow.id(), "mode", decision.mode().label()).register(registry).increment();
        return switch (decision.mode()) {
            case LEGACY -> legacy(flow, req, headers);
            case ASYNC -> async(flow, req, caller);
            case SHADOW -> shadow(flow, req, headers, caller);
        };
    }

    private Response legacy(GrayFlow flow, GatewayRequest req, HttpHeaders headers) {
        try {
            return answer(legacy.forward(flow, req.body, forwarded(headers)), GrayMode.LEGACY);
        } catch (LegacyProxy.LegacyUnavailableException e) {
            return unavailable(flow, e, GrayMode.LEGACY);
        }
    }

    private Response async(GrayFlow flow, GatewayRequest req, Callers.Caller caller) throws SQLException {
        Response refused = hubCheck(flow, req, caller);
        if (refused != null) {
            return refused;
        }
        EventStore.Stored stored = store.store(req.events, "gateway");
        return Response.accepted(new EventsResource.Accepted(stored.accepted(), stored.duplicates()))
                .type(MediaType.APPLICATION_JSON).header(MODE_HEADER, GrayMode.ASYNC.label()).build();
    }

    /**
     * Stores the event first (so a crash after the legacy call cannot lose what legacy applied), then returns whatever
     * the legacy endpoint answers. Nothing the hub does here changes that answer.
     */
    private Response shadow(GrayFlow flow, GatewayRequest req, HttpHeaders headers, Callers.Caller caller) {
        Response refused = hubCheck(flow, req, caller);
        String hubOutcome;
        String hubDetail = null;
        if (refused != null) {
            hubOutcome = "rejected";
            ApiKeyFilter.ErrorBody err = (ApiKeyFilter.ErrorBody) refused.getEntity();
            hubDetail = err.status() + " " + (err.field() == null ? "" : err.field() + " ")
                    + (err.rule() == null ? "" : "(" + err.rule() + ") ") + err.error();
        } else {
            try {
                EventStore.Stored stored = store.store(req.events, "gateway-shadow");
                hubOutcome = stored.duplicates().size() == req.events.size() ? "duplicate" : "accepted";
            } catch (SQLException | RuntimeException e) {
                LOG.errorf("Shadow store of flow %s failed for events %s: %s", flow.id(), req.eventIds, e.getMessage());
                hubOutcome = "store-failed";
                hubDetail = e.getClass().getSimpleName() + ": " + e.getMessage();
            }
        }
        boolean hubHasIt = hubOutcome.equals("accepted") || hubOutcome.equals("duplicate");
        LegacyProxy.Answer answer;
        try {
            answer = legacy.forward(flow, req.body, forwarded(headers));
        } catch (LegacyProxy.LegacyUnavailableException e) {
            if (hubHasIt) {
                mismatches.record(flow.id(), req.eventIds, req.hospital, req.source, GrayMismatches.LEGACY_UNAVAILABLE,
                        null, hubOutcome, e.getMessage());
            }
            return unavailable(flow, e, GrayMode.SHADOW);
        }
        String reason = null;
        if (answer.accepted() && hubOutcome.equals("rejected")) {
            reason = GrayMismatches.HUB_REJECTED;
        } else if (answer.accepted() && hubOutcome.equals("store-failed")) {
            reason = GrayMismatches.HUB_STORE_FAILED;
        } else if (!answer.accepted() && hubHasIt) {
            reason = GrayMismatches.LEGACY_REJECTED;
        }
        if (reason != null) {
            mismatches.record(flow.id(), req.eventIds, req.hospital, req.source, reason, answer.status(), hubOutcome,
                    hubDetail);
        }
        return answer(answer, GrayMode.SHADOW);
    }

    /**
     * The checks of /api/v1/events plus one: the flow must deliver the events (else they would be stored for
     * nobody). Null when the hub accepts the request.
     */
    private Response hubCheck(GrayFlow flow, GatewayRequest req, Callers.Caller caller) {
        if (!req.valid()) {
            return EventsResource.invalid(req.invalid);
        }
        List<Event> events = req.events;
        Flow outbox = flows.flow(flow.id()).orElse(null);
        if (outbox == null) {
            return error(422, "flow " + flow.id() + " has a gray switch but no outbox flow with that id runs in this "
                    + "hub, so the events would be delivered by nobody", null, "flow-takes-event");
        }
        for (int i = 0; i < events.size(); i++) {
            Event e = events.get(i);
            String at = events.size() == 1 ? "" : "[" + i + "].";
            if (caller.role() != Callers.Role.OPERATOR && !caller.name().equals(e.source())) {
                return error(403, at + "source: caller " + caller.name() + " may only send events with source "
                        + caller.name() + ", got " + e.source(), at + "source", "source-is-caller");
            }
            if (!outbox.takes(e)) {
                return error(422, at + "type: flow " + flow.id() + " does not deliver events of type " + e.type()
                        + " from hospital " + e.hospital() + " (it takes types " + outbox.types() + ", hospitals "
                        + outbox.hospitals() + ")", at + "type", "flow-takes-event");
            }
        }
        return null;
    }

    private static Map<String, String> forwarded(HttpHeaders headers) {
        Map<String, String> out = new LinkedHashMap<>();
        for (String name : FORWARDED_HEADERS) {
            String v = headers.getHeaderString(name);
            if (v != null) {
                out.put(name, v);
            }
        }
        return out;
    }

    private static Response answer(LegacyProxy.Answer a, GrayMode mode) {
        Response.ResponseBuilder b = Response.status(a.status()).entity(a.body()).header(MODE_HEADER, mode.label());
        if (a.contentType() != null) {
            b.header(HttpHeaders.CONTENT_TYPE, a.contentType());
        }
        return b.build();
    }

    private Response unavailable(GrayFlow flow, LegacyProxy.LegacyUnavailableException e, GrayMode mode) {
        String reason = e.timeout() ? "timeout" : "unreachable";
        Counter.builder("hub.gray.legacy.failures").description("Legacy calls that got no answer")
                .tags("flow", flow.id(), "reason", reason).register(registry).increment();
        LOG.warnf("Gateway %s: %s", flow.id(), e.getMessage());
        int status = e.timeout() ? 504 : 502;
        return ApiKeyFilter.ErrorBody.builder(status, e.getMessage(), null, "legacy-" + reason).header(MODE_HEADER, mode.label())
                .build();
    }

    private static Response error(int status, String message, String field, String rule) {
        return ApiKeyFilter.ErrorBody.response(status, message, field, rule);
    }

    // ---- operator views ---------------------------------------------------------------------------------------

    public record HospitalView(String mode, Integer canaryPercent) {
    }

    public record CallerView(String hospital, String source, int bucket, String mode, String reason) {
    }

    public record ConfigView(String flow, String mode, int canaryPercent, String legacyUrl, long connectTimeoutMs,
            long responseTimeoutMs, boolean outboxFlowRunning, Map<String, HospitalView> hospitals, CallerView caller) {
    }

    /** The effective gray switch of every flow. */
    @GET
    @Produces(MediaType.APPLICATION_JSON)
    public List<ConfigView> all() {
        return gray.flows().stream().map(f -> view(f, null, null)).toList();
    }

    /**
     * The effective gray switch of one flow; with {@code hospital} and {@code source} also the mode that caller gets
     * and why. Changed by editing the configuration (ConfigMap) and rolling the pods.
     */
    @GET
    @Path("{flowId}/config")
    @Produces(MediaType.APPLICATION_JSON)
    public Response config(@PathParam("flowId") String flowId, @QueryParam("hospital") String hospital,
            @QueryParam("source") String source) {
        return gray.flow(flowId).map(f -> Response.ok(view(f, hospital, source)).build())
                .orElseGet(() -> error(404, "no gray switch is configured for flow '" + flowId + "'", null, "gray-flow"));
    }

    /** The newest shadow-mode mismatches of a flow, for reconciliation. */
    @GET
    @Path("{flowId}/mismatches")
    @Produces(MediaType.APPLICATION_JSON)
    public List<GrayMismatches.Mismatch> mismatches(@PathParam("flowId") String flowId,
            @QueryParam("limit") @DefaultValue("100") int limit) throws SQLException {
        return mismatches.recent(flowId, Math.max(1, Math.min(limit, 1000)));
    }

    private ConfigView view(GrayFlow f, String hospital, String source) {
        Map<String, HospitalView> hospitals = new LinkedHashMap<>();
        f.hospitals().forEach((code, o) -> hospitals.put(code,
                new HospitalView(o.mode() == null ? null : o.mode().label(), o.canaryPercent())));
        CallerView caller = null;
        if (hospital != null && source != null) {
            GrayFlow.Decision d = f.decide(hospital, source);
            caller = new CallerView(hospital, source, GrayFlow.bucket(hospital, source), d.mode().label(), d.reason());
        }
        return new ConfigView(f.id(), f.mode().label(), f.canaryPercent(), f.legacyUrlForDisplay(),
                f.connectTimeout().toMillis(), f.responseTimeout().toMillis(), flows.flow(f.id()).isPresent(),
                hospitals, caller);
    }
}
