package org.hospitalhub.relay;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.util.Random;

import org.junit.jupiter.api.Test;

/** A packet's size in bytes is counted without encoding it, and must be what encoding it gives. */
class Utf8LengthTest {

    @Test
    void countsWhatEncodingGives() {
        String[] fixed = {"", "a", "é", "会诊", "😀", "a😀b", "\uD83D", "\uDE00", "\uDE00\uD83D", "x\uD83Dy", "\uD83D\uD83D\uDE00"};
        for (String s : fixed) {
            assertEquals(s.getBytes(StandardCharsets.UTF_8).length, PacketStore.utf8Length(s), s);
        }
        // random text over every width: ASCII, 2-byte, 3-byte (CJK), surrogate pairs, and lone surrogates
        char[] pool = {'a', '"', '\\', 'é', 'ß', '会', '诊', '\uFFFF', '\uD83D', '\uDE00', '\uD800', '\uDFFF'};
        Random random = new Random(20261205L);
        for (int round = 0; round < 20_000; round++) {
            char[] cs = new char[random.nextInt(40)];
            for (int i = 0; i < cs.length; i++) {
                cs[i] = pool[random.nextInt(pool.length)];
            }
            String s = new String(cs);
            assertEquals(s.getBytes(StandardCharsets.UTF_8).length, PacketStore.utf8Length(s), s);
        }
    }
}
