package org.hospitalhub.relay;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.core.checksums.RequestChecksumCalculation;
import software.amazon.awssdk.core.checksums.ResponseChecksumValidation;
import software.amazon.awssdk.http.apache.ApacheHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.S3Configuration;
import software.amazon.awssdk.services.s3.model.NoSuchKeyException;
import software.amazon.awssdk.services.s3.model.S3Object;

/**
 * A real S3 API server for the tests: S3Proxy (Maven Central, copied to {@code target/s3proxy/s3proxy.jar} by the
 * build) as a child process on 127.0.0.1, keeping its buckets as folders under {@code data}, so it can be stopped and
 * started again with what it held. It checks SigV4 signatures against its one identity.
 */
final class S3ProxyServer implements AutoCloseable {

    static final String IDENTITY = "hub-test";
    static final String CREDENTIAL = "hub-test-secret";

    final int port = RelayTreeTest.freePort();
    final Path data;
    private final Path properties;
    private Process process;

    S3ProxyServer(Path dir, String... buckets) throws IOException {
        data = Files.createDirectories(dir.resolve("data"));
        for (String b : buckets) {
            Files.createDirectories(data.resolve(b));
        }
        properties = Files.writeString(dir.resolve("s3proxy.properties"), String.join("\n",
                "s3proxy.endpoint=http://127.0.0.1:" + port,
                "s3proxy.authorization=aws-v2-or-v4",
                "s3proxy.identity=" + IDENTITY,
                "s3proxy.credential=" + CREDENTIAL,
                "jclouds.provider=filesystem",
                "jclouds.filesystem.basedir=" + data.toAbsolutePath()) + "\n");
    }

    URI endpoint() {
        return URI.create("http://127.0.0.1:" + port);
    }

    S3ProxyServer start() throws IOException, InterruptedException {
        Path jar = Path.of(System.getProperty("hub.test.s3proxy-jar", "target/s3proxy/s3proxy.jar"));
        if (!Files.exists(jar)) {
            throw new IllegalStateException("no S3Proxy at " + jar + ": run the tests through Maven (it copies "
                    + "org.gaul:s3proxy:jar-with-dependencies there in process-test-resources)");
        }
        String java = ProcessHandle.current().info().command().orElse("java");
        process = new ProcessBuilder(List.of(java, "-Xmx256m", "-jar", jar.toAbsolutePath().toString(), "--properties",
                properties.toAbsolutePath().toString())).redirectErrorStream(true)
                .redirectOutput(properties.resolveSibling("s3proxy.log").toFile()).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < deadline) {
            if (!process.isAlive()) {
                throw new IllegalStateException("S3Proxy exited with " + process.exitValue() + "; see "
                        + properties.resolveSibling("s3proxy.log"));
            }
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress("127.0.0.1", port), 500);
                return this;
            } catch (IOException e) {
                Thread.sleep(200);
            }
        }
        throw new IllegalStateException("S3Proxy did not listen on " + port + " within 60 s");
    }

    void stop() throws InterruptedException {
        if (process != null) {
            process.destroy();
            if (!process.waitFor(20, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
            process = null;
        }
    }

    S3Backend.Settings settings(String bucket, String prefix) {
        return new S3Backend.Settings(Optional.of(endpoint()), "us-east-1", bucket, prefix, true, Optional.of(IDENTITY),
                Optional.of(CREDENTIAL));
    }

    /** A client of its own, to look at the bucket as an operator would. */
    S3Client client() {
        return S3Client.builder().endpointOverride(endpoint()).region(Region.US_EAST_1).forcePathStyle(true)
                .credentialsProvider(StaticCredentialsProvider.create(AwsBasicCredentials.create(IDENTITY, CREDENTIAL)))
                .serviceConfiguration(S3Configuration.builder().chunkedEncodingEnabled(false).build())
                .requestChecksumCalculation(RequestChecksumCalculation.WHEN_REQUIRED)
                .responseChecksumValidation(ResponseChecksumValidation.WHEN_REQUIRED)
                .httpClient(ApacheHttpClient.builder().socketTimeout(Duration.ofSeconds(30)).build()).build();
    }

    static byte[] object(S3Client s3, String bucket, String key) {
        try {
            return s3.getObjectAsBytes(b -> b.bucket(bucket).key(key)).asByteArray();
        } catch (NoSuchKeyException e) {
            return null;
        }
    }

    static List<String> keys(S3Client s3, String bucket, String prefix) {
        return s3.listObjectsV2Paginator(b -> b.bucket(bucket).prefix(prefix)).contents().stream().map(S3Object::key).toList();
    }

    @Override
    public void close() throws InterruptedException {
        stop();
    }
}
