package org.hospitalhub.ops;

import java.util.Optional;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;

import jakarta.ws.rs.NotAcceptableException;
import jakarta.ws.rs.NotAllowedException;
import jakarta.ws.rs.NotFoundException;
import jakarta.ws.rs.NotSupportedException;
import jakarta.ws.rs.container.ContainerRequestContext;
import jakarta.ws.rs.core.HttpHeaders;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.resteasy.reactive.server.ServerExceptionMapper;

import io.quarkus.runtime.configuration.MemorySize;
import io.vertx.ext.web.Router;

/**
 * The answers the REST layer gives by itself (no resource at the path, a method or media type the resource does not
 * take) in the API's error shape, {@code {"status", "error", "field", "rule"}}, naming what was wrong, instead of an
 * empty body or an HTML page.
 */
public class HttpErrors {

    /**
     * A body for the API ({@code /api/*}) declared larger than {@code quarkus.http.limits.max-body-size} (set from
     * {@code hub.ingest.max-body-size}, default 1M) is answered 413 saying so, before it is read (the REST layer would
     * answer 413 with no body).
     */
    @ApplicationScoped
    public static class BodyLimit {

        private final long max;
        private final String configured;

        public BodyLimit(@ConfigProperty(name = "quarkus.http.limits.max-body-size") Optional<MemorySize> max,
                @ConfigProperty(name = "hub.ingest.max-body-size", defaultValue = "1M") String configured) {
            this.max = max.map(MemorySize::asLongValue).orElse(Long.MAX_VALUE);
            this.configured = configured;
        }

        void routes(@Observes Router router) {
            // the API only: /relay/v1 sets its own limit (hub.relay.max-packet-size × 64) and answers its own 413
            router.route("/api/*").order(-1000).handler(ctx -> {
                String length = ctx.request().getHeader(HttpHeaders.CONTENT_LENGTH);
                long declared;
                try {
                    declared = length == null ? -1 : Long.parseLong(length.strip());
                } catch (NumberFormatException e) {
                    declared = -1;
                }
                if (declared > max) {
                    ctx.response().setStatusCode(413).putHeader(HttpHeaders.CONTENT_TYPE, MediaType.APPLICATION_JSON)
                            .putHeader("Connection", "close")
                            .end(io.vertx.core.json.Json.encode(new ApiKeyFilter.ErrorBody(413, "the body is " + declared
                                    + " bytes; at most " + max + " (" + configured + ", hub.ingest.max-body-size) are accepted",
                                    "body", "maxLength")));
                    return;
                }
                ctx.next();
            });
        }
    }

    @ServerExceptionMapper
    public Response notFound(NotFoundException e, ContainerRequestContext ctx) {
        return error(404, "no resource at " + ctx.getMethod() + " " + ctx.getUriInfo().getPath()
                + "; the API's paths are listed in the README", "path", "exists", null);
    }

    @ServerExceptionMapper
    public Response notAllowed(NotAllowedException e, ContainerRequestContext ctx) {
        String allowed = String.join(", ", e.getResponse().getAllowedMethods());
        return error(405, "method " + ctx.getMethod() + " is not allowed on " + ctx.getUriInfo().getPath()
                + (allowed.isEmpty() ? "" : "; allowed: " + allowed), "method", "allowed", allowed.isEmpty() ? null : allowed);
    }

    @ServerExceptionMapper
    public Response notSupported(NotSupportedException e, ContainerRequestContext ctx) {
        MediaType type = ctx.getMediaType();
        return error(415, "Content-Type " + (type == null ? "(none)" : "'" + type + "'") + " is not accepted by "
                + ctx.getMethod() + " " + ctx.getUriInfo().getPath() + "; send application/json (or application/xml where "
                + "the README says so)", "Content-Type", "media-type", null);
    }

    @ServerExceptionMapper
    public Response notAcceptable(NotAcceptableException e, ContainerRequestContext ctx) {
        return error(406, "none of the media types in Accept (" + ctx.getHeaderString(HttpHeaders.ACCEPT) + ") can be produced by "
                + ctx.getMethod() + " " + ctx.getUriInfo().getPath(), "Accept", "media-type", null);
    }

    private static Response error(int status, String message, String field, String rule, String allow) {
        Response.ResponseBuilder r = ApiKeyFilter.ErrorBody.builder(status, message, field, rule);
        if (allow != null) {
            r.header(HttpHeaders.ALLOW, allow);
        }
        return r.build();
    }
}
