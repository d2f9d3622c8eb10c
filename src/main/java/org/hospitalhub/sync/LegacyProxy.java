package org.hospitalhub.sync;

import java.io.InterruptedIOException;
import java.time.Duration;
import java.util.Map;

import jakarta.enterprise.context.ApplicationScoped;

import org.apache.camel.Exchange;
import org.apache.camel.Message;
import org.apache.camel.ProducerTemplate;

/**
 * Calls a flow's legacy synchronous endpoint with the caller's request, unchanged, through Camel's http component
 * (the same HttpClient 5 stack, TLS and pool settings as the http-sink). The endpoint is a bridge
 * ({@code bridgeEndpoint=true}: no cookie store shared between callers), any status is an answer to pass back
 * ({@code throwExceptionOnFailure=false}), and nothing is retried here (automatic retries are off for the whole
 * component): the caller retries as it always did.
 */
@ApplicationScoped
public class LegacyProxy {

    /** What the legacy endpoint answered. */
    public record Answer(int status, String contentType, byte[] body) {

        public boolean accepted() {
            return status >= 200 && status < 300;
        }
    }

    /** The legacy endpoint gave no answer: refused, unreachable, or too slow. */
    public static class LegacyUnavailableException extends Exception {

        private final boolean timeout;

        LegacyUnavailableException(String message, boolean timeout, Throwable cause) {
            super(message, cause);
            this.timeout = timeout;
        }

        public boolean timeout() {
            return timeout;
        }
    }

    private final ProducerTemplate template;

    public LegacyProxy(ProducerTemplate template) {
        this.template = template;
    }

    /**
     * Posts the body with the given request headers (the caller's Content-Type, SOAPAction, Accept) to the flow's
     * legacy URL and returns the answer as it came.
     */
    public Answer forward(GrayFlow flow, byte[] body, Map<String, String> headers) throws LegacyUnavailableException {
        Exchange ex = template.request(endpointUri(flow), e -> {
            Message m = e.getMessage();
            m.setBody(body);
            headers.forEach(m::setHeader);
            m.setHeader(Exchange.HTTP_METHOD, "POST");
        });
        Exception failure = ex.getException();
        if (failure != null) {
            boolean timeout = false;
            for (Throwable c = failure; c != null && !timeout; c = c.getCause() == c ? null : c.getCause()) {
                timeout = c instanceof InterruptedIOException;
            }
            String why = timeout
                    ? "did not answer within " + millis(flow.connectTimeout()) + " ms (connect) / "
                            + millis(flow.responseTimeout()) + " ms (response)"
                    : "could not be reached: " + rootMessage(failure);
            throw new LegacyUnavailableException("legacy endpoint of flow " + flow.id() + " (" + flow.legacyUrlForDisplay()
                    + ") " + why, timeout, failure);
        }
        Message m = ex.getMessage();
        Integer status = m.getHeader(Exchange.HTTP_RESPONSE_CODE, Integer.class);
        byte[] answer = m.getBody(byte[].class);
        return new Answer(status == null ? 200 : status, m.getHeader(Exchange.CONTENT_TYPE, String.class),
                answer == null ? new byte[0] : answer);
    }

    static String endpointUri(GrayFlow flow) {
        String url = flow.legacyUrl().toString();
        long connect = millis(flow.connectTimeout());
        return url + (url.contains("?") ? "&" : "?") + "bridgeEndpoint=true&throwExceptionOnFailure=false"
                + "&connectTimeout=" + connect + "&connectionRequestTimeout=" + connect
                + "&responseTimeout=" + millis(flow.responseTimeout());
    }

    private static long millis(Duration d) {
        return d.toMillis();
    }

    private static String rootMessage(Throwable t) {
        Throwable r = t;
        while (r.getCause() != null && r.getCause() != r) {
            r = r.getCause();
        }
        return r.getClass().getSimpleName() + (r.getMessage() == null ? "" : ": " + r.getMessage());
    }
}
