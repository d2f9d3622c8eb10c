package org.hospitalhub.bench;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Properties;

/**
 * Entry point of the child JVM that runs the benchmark's single-node KRaft Kafka broker (Kafka 4.1.1 from Maven
 * Central, the version the hub's tests use). Formats the log directory on first start, then runs {@code kafka.Kafka}.
 * It halts as soon as its stdin closes, so it never outlives the benchmark JVM, even one killed with SIGKILL.
 * Arguments: server.properties path, cluster id.
 */
public final class BrokerMain {

    private BrokerMain() {
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
        Properties p = new Properties();
        try (var r = Files.newBufferedReader(props)) {
            p.load(r);
        }
        Path logDir = Path.of(p.getProperty("log.dirs"));
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
}
