package org.hospitalhub.relay;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HexFormat;
import java.util.Optional;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The tokens a relay node issued: the environment's spec plus a mounted file, looked up by hash, bad specs refused. */
class RelayTokensTest {

    @Test
    void tokensComeFromTheSpecAndFromAFileOfManyLines(@TempDir Path dir) throws Exception {
        StringBuilder file = new StringBuilder("# issued 2026-12-03\n");
        for (int i = 0; i < 5000; i++) {
            file.append("clinic-").append(i).append(":tok-").append(i).append('\n');
        }
        String hashed = HexFormat.of().formatHex(org.hospitalhub.ops.Callers.sha256("tok-hashed"));
        file.append("clinic-h:sha256:").append(hashed).append("\r\n");
        Path f = Files.writeString(dir.resolve("tokens"), file);
        RelayApp app = new RelayApp(true, Optional.of("x.yaml"), Optional.of("county-1:tok-county"), Optional.of(f.toString()),
                Optional.empty(), 0, "127.0.0.1", Duration.ofSeconds(10), Duration.ofSeconds(30), Duration.ofSeconds(20),
                Duration.ofSeconds(15), 65536, Duration.ofDays(7), Duration.ofMillis(500), Duration.ofSeconds(30),
                Duration.ofSeconds(5), Duration.ofDays(8), 256, dir.toString(), "filesystem", Optional.empty(), null, null, null, null, null);
        RelayTokens t = RelayTokens.parse(app.tokenSpec());
        assertEquals(5002, t.ids().size());
        assertEquals(Optional.of("county-1"), t.authenticate("tok-county"));
        assertEquals(Optional.of("clinic-4321"), t.authenticate("tok-4321"));
        assertEquals(Optional.of("clinic-4321"), t.authenticate(" tok-4321 "), "surrounding blanks are not part of a token");
        assertEquals(Optional.of("clinic-h"), t.authenticate("tok-hashed"), "a sha256: entry opens with the plain token");
        assertFalse(t.authenticate("sha256:" + hashed).isPresent(), "the hash itself is not a token");
        assertFalse(t.authenticate("tok-5000").isPresent());
        assertFalse(t.authenticate("").isPresent());
        assertFalse(t.authenticate(null).isPresent());

        RelayApp missing = new RelayApp(true, Optional.of("x.yaml"), Optional.empty(), Optional.of(dir.resolve("nope").toString()),
                Optional.empty(), 0, "127.0.0.1", Duration.ofSeconds(10), Duration.ofSeconds(30), Duration.ofSeconds(20),
                Duration.ofSeconds(15), 65536, Duration.ofDays(7), Duration.ofMillis(500), Duration.ofSeconds(30),
                Duration.ofSeconds(5), Duration.ofDays(8), 256, dir.toString(), "filesystem", Optional.empty(), null, null, null, null, null);
        IllegalStateException e = assertThrows(IllegalStateException.class, missing::tokenSpec);
        assertTrue(e.getMessage().contains("hub.relay.tokens-file") && e.getMessage().contains("nope"), e.getMessage());
    }

    @Test
    void badEntriesAreRefusedWithoutShowingTheToken() {
        IllegalArgumentException noColon = assertThrows(IllegalArgumentException.class,
                () -> RelayTokens.parse("a:tok-a;secret-without-id"));
        assertTrue(noColon.getMessage().contains("entry 2") && !noColon.getMessage().contains("secret"), noColon.getMessage());
        IllegalArgumentException badHash = assertThrows(IllegalArgumentException.class, () -> RelayTokens.parse("a:sha256:abc"));
        assertTrue(badHash.getMessage().contains("64 hex digits"), badHash.getMessage());
        IllegalArgumentException shared = assertThrows(IllegalArgumentException.class,
                () -> RelayTokens.parse("a:same-token\nb:same-token"));
        assertTrue(shared.getMessage().contains("b") && shared.getMessage().contains("same token as a")
                && !shared.getMessage().contains("same-token"), shared.getMessage());
    }
}
