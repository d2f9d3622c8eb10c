package org.hospitalhub.support;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Entry point of the child JVM that runs a real single-node KRaft Kafka broker (Kafka 4.1.1 from Maven Central) for
 * the tests. Formats the log directory on first start, then runs {@code kafka.Kafka}. It exits as soon as its stdin
 * closes, so it never outlives the test JVM that started it (even when that one is killed).
 * Arguments: server.properties path, cluster id.
 */
public final class KafkaBrokerMain {

    private KafkaBrokerMain() {
    }

    public static void main(String[] args) throws Exception {
        Path props = Path.of(args[0]);
        String clusterId = args[1];
        Thread watchdog = new Thread(() -> {
            try (InputStream in = System.in) {
                while (in.read() >= 0) {
                    // the parent never writes; EOF means it is gone
                }
            } catch (IOException ignored) {
                // same: the parent is gone
            }
            Runtime.getRuntime().halt(0);
        }, "parent-watchdog");
        watchdog.setDaemon(true);
        watchdog.start();
        Path logDir = Path.of(readProperty(props, "log.dirs"));
        if (!Files.exists(logDir.resolve("meta.properties"))) {
            int rc = kafka.tools.StorageTool.execute(new String[] {"format", "-t", clusterId, "-c", props.toString(),
                    "--standalone"}, System.out);
            if (rc != 0) {
                System.err.println("kafka storage format failed: " + rc);
                Runtime.getRuntime().halt(2);
            }
        }
        kafka.Kafka.main(new String[] {props.toString()});
    }

    private static String readProperty(Path file, String key) throws IOException {
        java.util.Properties p = new java.util.Properties();
        try (var r = Files.newBufferedReader(file)) {
            p.load(r);
        }
        return p.getProperty(key);
    }
}
