package org.hospitalhub.delivery;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Optional;

import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.ObjectMapper;

/** The payload text the sinks write is exactly the payload, whatever the header strings contain. */
class EventPayloadJsonTest {

    private final ObjectMapper mapper = new ObjectMapper();

    @Test
    void payloadTextIsThePayloadEvenWhenAHeaderStringLooksLikeIt() throws Exception {
        EventParser parser = new EventParser(new SchemaRegistry(mapper, Optional.empty()));
        String tricky = "P1\\\",\\\"payload\\\":{\\\"x\\\":1}\\\\";
        Event e = parser.parseOne("""
                {"eventId":"e-1","type":"his.charge.refunded","source":"his","hospital":"test","key":"%s",
                 "occurredAt":"2026-11-22T08:00:00+08:00",
                 "payload":{"chargeId":"C-1","patientId":"P1","amount":1.50,"reason":"退费 \\"quoted\\", \\\\ back"}}
                """.formatted(tricky));
        assertEquals("P1\",\"payload\":{\"x\":1}\\", e.key());
        assertEquals(e.payload().toString(), e.payloadJson());
        assertEquals(mapper.readTree(e.payloadJson()), e.payload());
    }
}
