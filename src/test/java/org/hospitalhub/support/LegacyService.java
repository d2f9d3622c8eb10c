package org.hospitalhub.support;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import jakarta.ws.rs.Consumes;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.core.Context;
import jakarta.ws.rs.core.HttpHeaders;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

/**
 * A hospital's legacy synchronous web service for the gray-switch tests (served by the test application on its own
 * port, outside /api): records each call as it arrived and answers with a chosen status, body and delay.
 */
@Path("/test-legacy/charges")
public class LegacyService {

    /** One call as received. */
    public record Call(byte[] body, String contentType, String soapAction, String apiKey, String authorization) {

        public String text() {
            return new String(body, java.nio.charset.StandardCharsets.UTF_8);
        }
    }

    public static final List<Call> CALLS = new CopyOnWriteArrayList<>();
    public static volatile int status = 200;
    public static volatile String answer = "<ack xmlns=\"urn:legacy:charges\"><code>0</code></ack>";
    public static volatile String answerType = "text/xml;charset=UTF-8";
    public static volatile long delayMillis;

    @POST
    @Consumes(MediaType.WILDCARD)
    public Response receive(byte[] body, @Context HttpHeaders headers) throws InterruptedException {
        CALLS.add(new Call(body, headers.getHeaderString(HttpHeaders.CONTENT_TYPE), headers.getHeaderString("SOAPAction"),
                headers.getHeaderString("X-Api-Key"), headers.getHeaderString(HttpHeaders.AUTHORIZATION)));
        if (delayMillis > 0) {
            Thread.sleep(delayMillis);
        }
        return Response.status(status).entity(answer).header(HttpHeaders.CONTENT_TYPE, answerType).build();
    }

    /** The calls whose body mentions this text (an event id). */
    public static List<Call> callsWith(String text) {
        return CALLS.stream().filter(c -> c.text().contains(text)).toList();
    }

    public static void reset() {
        CALLS.clear();
        status = 200;
        answer = "<ack xmlns=\"urn:legacy:charges\"><code>0</code></ack>";
        answerType = "text/xml;charset=UTF-8";
        delayMillis = 0;
    }
}
