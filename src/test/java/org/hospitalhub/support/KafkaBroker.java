package org.hospitalhub.support;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

/**
 * A real single-node KRaft Kafka broker in a child JVM (see {@link KafkaBrokerMain}), on 127.0.0.1 with fixed ports
 * for its lifetime, so tests can stop it (broker outage) and start it again on the same address and data.
 */
public final class KafkaBroker {

    private static KafkaBroker shared;

    private final Path dir;
    private final int port;
    private final int controllerPort;
    private final String clusterId;
    private Process process;

    private KafkaBroker(Path dir) throws IOException {
        this.dir = dir;
        this.port = freePort();
        this.controllerPort = freePort();
        this.clusterId = newClusterId();
    }

    /** The broker all tests of this JVM share, started on first use. */
    public static synchronized KafkaBroker shared() {
        SlowExitWatch.install();
        if (shared == null) {
            try {
                // Quarkus may load this class again for another test profile (a new class loader, so a new static
                // field): give each loading its own broker directory, or the second broker would find the first one's
                // data directory locked and exit.
                Path dir = Path.of("target", "kafka-" + ProcessHandle.current().pid() + "-"
                        + Integer.toHexString(System.identityHashCode(KafkaBroker.class))).toAbsolutePath();
                shared = new KafkaBroker(dir);
                shared.start();
                Runtime.getRuntime().addShutdownHook(new Thread(shared::stop));
            } catch (IOException e) {
                throw new IllegalStateException("cannot start the test Kafka broker: " + e.getMessage(), e);
            }
        }
        return shared;
    }

    /** A broker of its own, not started yet (e.g. to start the hub while its broker is down). */
    public static KafkaBroker create(String name) {
        try {
            KafkaBroker b = new KafkaBroker(Path.of("target", "kafka-" + name + "-" + ProcessHandle.current().pid())
                    .toAbsolutePath());
            Runtime.getRuntime().addShutdownHook(new Thread(b::stop));
            return b;
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    public String bootstrapServers() {
        return "127.0.0.1:" + port;
    }

    /** Kafka's Uuid-based cluster ids may start with '-', which the storage tool reads as an option: avoid them. */
    private static String newClusterId() {
        String id;
        do {
            id = org.apache.kafka.common.Uuid.randomUuid().toString();
        } while (id.startsWith("-"));
        return id;
    }

    public synchronized void start() throws IOException {
        if (process != null && process.isAlive()) {
            return;
        }
        Files.createDirectories(dir);
        Path props = dir.resolve("server.properties");
        Properties p = new Properties();
        p.setProperty("process.roles", "broker,controller");
        p.setProperty("node.id", "1");
        p.setProperty("controller.quorum.bootstrap.servers", "127.0.0.1:" + controllerPort);
        p.setProperty("listeners", "PLAINTEXT://127.0.0.1:" + port + ",CONTROLLER://127.0.0.1:" + controllerPort);
        p.setProperty("advertised.listeners", "PLAINTEXT://127.0.0.1:" + port);
        p.setProperty("controller.listener.names", "CONTROLLER");
        p.setProperty("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT");
        p.setProperty("inter.broker.listener.name", "PLAINTEXT");
        p.setProperty("log.dirs", dir.resolve("data").toString());
        p.setProperty("num.partitions", "3");
        p.setProperty("offsets.topic.replication.factor", "1");
        p.setProperty("offsets.topic.num.partitions", "3");
        p.setProperty("transaction.state.log.replication.factor", "1");
        p.setProperty("transaction.state.log.min.isr", "1");
        p.setProperty("share.coordinator.state.topic.replication.factor", "1");
        p.setProperty("group.initial.rebalance.delay.ms", "0");
        p.setProperty("auto.create.topics.enable", "true");
        p.setProperty("log.flush.interval.messages", "1");
        try (var w = Files.newBufferedWriter(props)) {
            p.store(w, "test broker");
        }
        Path logging = dir.resolve("logging.properties");
        Files.writeString(logging, "logger.level=WARN\nlogger.handlers=FILE\n"
                + "handler.FILE=org.jboss.logmanager.handlers.FileHandler\nhandler.FILE.level=WARN\n"
                + "handler.FILE.fileName=" + dir.resolve("broker.log") + "\nhandler.FILE.append=true\n"
                + "handler.FILE.formatter=PATTERN\nformatter.PATTERN=org.jboss.logmanager.formatters.PatternFormatter\n"
                + "formatter.PATTERN.properties=pattern\nformatter.PATTERN.pattern=%d %-5p [%c{1}] %s%e%n\n");
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("-Xms128m");
        cmd.add("-Xmx512m");
        cmd.add("-Djava.util.logging.manager=org.jboss.logmanager.LogManager");
        cmd.add("-Dlogging.configuration=" + logging.toUri());
        cmd.add("-Dlog4j2.level=WARN");
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(KafkaBrokerMain.class.getName());
        cmd.add(props.toString());
        cmd.add(clusterId);
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("stdout.log").toFile()));
        process = pb.start();
        waitUntilServing(Duration.ofSeconds(60));
    }

    /** Stops the broker abruptly (like a crash or a network outage); its data stays for {@link #start()}. */
    public synchronized void stop() {
        if (process != null) {
            process.destroyForcibly();
            try {
                process.waitFor();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            process = null;
        }
    }

    private void waitUntilServing(Duration max) throws IOException {
        Instant deadline = Instant.now().plus(max);
        Properties p = new Properties();
        p.setProperty(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers());
        p.setProperty(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        p.setProperty(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
        while (Instant.now().isBefore(deadline)) {
            if (!process.isAlive()) {
                throw new IOException("the test Kafka broker exited with " + process.exitValue() + "; see "
                        + dir.resolve("stdout.log"));
            }
            if (portOpen()) {
                try (Admin admin = Admin.create(p)) {
                    admin.describeCluster().nodes().get();
                    return;
                } catch (Exception notYet) {
                    // still starting
                }
            }
            sleep(200);
        }
        throw new IOException("the test Kafka broker did not start within " + max + "; see " + dir.resolve("stdout.log"));
    }

    private boolean portOpen() {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port), 200);
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

}
