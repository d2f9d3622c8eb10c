package org.hospitalhub.it;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** The packaged hub (target/quarkus-app/quarkus-run.jar) in its own JVM, as in production: start, kill -9, stop. */
final class HubProcess {

    private final Path jar = Path.of(System.getProperty("hub.jar", "target/quarkus-app/quarkus-run.jar"));
    private final Map<String, String> env;
    private final int port;
    private final Path log;
    private Process process;

    HubProcess(int port, Map<String, String> env, Path log) {
        this.port = port;
        this.env = env;
        this.log = log;
    }

    void start() throws IOException, InterruptedException {
        start("/q/health/ready");
    }

    /** Starts the hub and waits until {@code healthPath} answers 200 (ready, or only started/live). */
    void start(String healthPath) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Xmx384m", "-jar", jar.toString()));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()));
        pb.environment().putAll(env);
        pb.environment().put("QUARKUS_HTTP_PORT", String.valueOf(port));
        // tests listen on the loopback only (the prod profile's default is every interface)
        pb.environment().putIfAbsent("QUARKUS_HTTP_HOST", "127.0.0.1");
        pb.environment().putIfAbsent("HUB_RELAY_TCP_HOST", "127.0.0.1");
        process = pb.start();
        Instant deadline = Instant.now().plusSeconds(60);
        while (Instant.now().isBefore(deadline)) {
            if (!process.isAlive()) {
                throw new IllegalStateException("the hub exited with " + process.exitValue() + "; see " + log);
            }
            if (status(healthPath) == 200) {
                return;
            }
            Thread.sleep(250);
        }
        throw new IllegalStateException("the hub did not answer 200 on " + healthPath + " within 60 s; see " + log);
    }

    /** SIGKILL: no shutdown hook, no flush, like a node losing power or the OOM killer. */
    void kill() throws InterruptedException {
        process.destroyForcibly();
        process.waitFor();
    }

    /** SIGTERM, as Kubernetes does before a pod goes away: a graceful shutdown. */
    int stop() throws InterruptedException {
        process.destroy();
        if (!process.waitFor(60, java.util.concurrent.TimeUnit.SECONDS)) {
            process.destroyForcibly();
            throw new IllegalStateException("the hub did not stop within 60 s of SIGTERM");
        }
        return process.exitValue();
    }

    /**
     * HTTP/1.1, as curl and the hospitals' systems speak to the hub. The JDK client's default (HTTP/2, an h2c upgrade
     * on plain http) once read the body of a large HTTP/1.1 answer (/q/metrics) as HTTP/2 frames: "Frame type(102)
     * length(6252910) exceeds MAX_FRAME_SIZE", a failure of the client, not of the hub.
     */
    private static final HttpClient HTTP = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(5)).build();

    boolean alive() {
        return process != null && process.isAlive();
    }

    int status(String path) {
        try {
            return HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
                    .timeout(Duration.ofSeconds(5)).GET().build(), HttpResponse.BodyHandlers.discarding()).statusCode();
        } catch (IOException e) {
            return -1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return -1;
        }
    }

    HttpResponse<String> post(String path, String apiKey, String body) throws IOException, InterruptedException {
        return HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
                .timeout(Duration.ofSeconds(30)).header("X-Api-Key", apiKey).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    String get(String path) throws IOException, InterruptedException {
        return HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
                .timeout(Duration.ofSeconds(10)).GET().build(), HttpResponse.BodyHandlers.ofString()).body();
    }

    /** A free port on the loopback (the tests listen there only). */
    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }
}
