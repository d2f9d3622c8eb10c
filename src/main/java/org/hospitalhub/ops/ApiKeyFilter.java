package org.hospitalhub.ops;

import jakarta.ws.rs.container.ContainerRequestContext;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import org.jboss.resteasy.reactive.server.ServerRequestFilter;

/**
 * Authenticates every call under /api: header {@code X-Api-Key} or {@code Authorization: Bearer <key>}. Admin APIs
 * (dead letters, operations) require the operator role.
 */
public class ApiKeyFilter {

    /** The name of the caller this filter authenticated (an /api request always has one). */
    public static String callerName(ContainerRequestContext ctx) {
        Callers.Caller c = (Callers.Caller) ctx.getProperty(CALLER);
        if (c == null) {
            throw new IllegalStateException("no authenticated caller on an /api request");
        }
        return c.name();
    }


    public static final String CALLER = "hub.caller";

    private final Callers callers;

    public ApiKeyFilter(Callers callers) {
        this.callers = callers;
    }

    @ServerRequestFilter(preMatching = true)
    public Response authenticate(ContainerRequestContext ctx) {
        String path = ctx.getUriInfo().getPath();
        if (!path.startsWith("/api/")) {
            return null;
        }
        String key = ctx.getHeaderString("X-Api-Key");
        String auth = ctx.getHeaderString("Authorization");
        if (key == null && auth != null && auth.regionMatches(true, 0, "Bearer ", 0, 7)) {
            key = auth.substring(7);
        }
        var caller = callers.authenticate(key);
        if (caller.isEmpty()) {
            return error(Response.Status.UNAUTHORIZED, key == null ? "missing API key (header X-Api-Key)" : "unknown API key");
        }
        if (caller.get().role() == Callers.Role.DOCTOR) { // a doctor key only opens the qc push WebSocket
            return error(Response.Status.FORBIDDEN, "caller " + caller.get().name() + " (doctor) may only subscribe to the qc task push");
        }
        boolean admin = !path.startsWith("/api/v1/events") && !isGatewayCall(ctx.getMethod(), path);
        if (admin && caller.get().role() != Callers.Role.OPERATOR) {
            return error(Response.Status.FORBIDDEN, "caller " + caller.get().name() + " lacks the operator role");
        }
        ctx.setProperty(CALLER, caller.get());
        return null;
    }

    /** A source system's call through the gray-switch gateway: POST /api/v1/gateway/{flowId} (views need operator). */
    static boolean isGatewayCall(String method, String path) {
        String prefix = "/api/v1/gateway/";
        return "POST".equals(method) && path.startsWith(prefix) && path.length() > prefix.length()
                && path.indexOf('/', prefix.length()) < 0;
    }

    static Response error(Response.Status status, String message) {
        return ErrorBody.response(status.getStatusCode(), message, null, null);
    }

    /**
     * The body of every error the hub's APIs answer: the HTTP status, what is wrong, and where it applies the field
     * (a JSON path, a parameter or a header) and the rule it broke.
     */
    public record ErrorBody(int status, String error, String field, String rule) {

        /** This error as a JSON answer with its status. */
        public static Response response(int status, String error, String field, String rule) {
            return builder(status, error, field, rule).build();
        }

        /** This error as a JSON answer with its status, for a caller that adds headers. */
        public static Response.ResponseBuilder builder(int status, String error, String field, String rule) {
            return Response.status(status).type(MediaType.APPLICATION_JSON).entity(new ErrorBody(status, error, field, rule));
        }
    }
}
