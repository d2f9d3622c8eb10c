package org.hospitalhub.federation.network;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;

import org.junit.jupiter.api.Test;

/** A batch's byte budget is counted in UTF-8, as the receiver's body limit is: Chinese text is 3 bytes a character. */
class OutboxBatchBudgetTest {

    @Test
    void theLengthIsTheUtf8Length() {
        for (String s : new String[] { "", "{\"title\":\"ascii\"}", "糖尿病队列研究", "é and ß", "𝔘 outside the BMP 🏥",
                "a lone surrogate \uD800 here" }) {
            assertEquals(s.getBytes(StandardCharsets.UTF_8).length, FederationOutbox.utf8Length(s), s);
        }
        assertEquals(21, FederationOutbox.utf8Length("糖尿病队列研究"), "7 characters, 21 bytes");
    }
}
