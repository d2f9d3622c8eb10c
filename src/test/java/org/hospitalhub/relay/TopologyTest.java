package org.hospitalhub.relay;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.hospitalhub.relay.client.Packet;
import org.junit.jupiter.api.Test;

/** Topology files and the routing they give: up toward the common ancestor, then down; who may send what. */
class TopologyTest {

    static final Topology CITY = Topology.parse("""
            node: city-a
            level: city
            parent: {id: province, transport: tcp, host: province.example, port: 7700}
            children:
              - {id: county-1, transport: http}
              - {id: county-2, transport: tcp, children: [{id: county-2-east}]}
            clients:
              - {id: dr-li}
            """, "city.yaml");

    static Routing.Decision route(Topology t, String from, String to, Peer origin) {
        Routing r = new Routing(t, "consultation"::equals);
        Packet p = Packet.create(from, to, "x", null, 60);
        r.authorize(p, origin);
        return r.route(p, origin);
    }

    @Test
    void parsesTheNodesPlaceInTheTree() {
        assertEquals("city-a", CITY.node());
        assertEquals("province", CITY.parent().orElseThrow().id());
        assertEquals(7700, CITY.parent().get().port());
        assertEquals("county-2", CITY.childToward("county-2-east").orElseThrow().id());
        assertTrue(CITY.inSubtree("county-1"));
        assertTrue(!CITY.inSubtree("county-9"));
        assertTrue(!CITY.audit(), "only the top audits by default");
        assertEquals(Topology.Transport.ANY, CITY.clients().get("dr-li"));
    }

    @Test
    void routesUpThenDown() {
        Peer fromParent = new Peer("province", Peer.Kind.PARENT);
        Peer county1 = new Peer("county-1", Peer.Kind.CHILD);
        assertEquals("county-2", route(CITY, "dr-zhao@province", "clinic-e@county-2-east", fromParent).hop());
        assertEquals("dr-li@city-a", route(CITY, "dr-zhao@province", "dr-li@city-a", fromParent).hop());
        assertEquals("svc:consultation", route(CITY, "dr-zhao@province", "consultation@city-a", fromParent).hop());
        assertEquals("province", route(CITY, "clinic-a@county-1", "clinic-e@county-2-east", county1).hop(),
                "without the shortcut a packet from below goes via the top, even for this subtree");
        assertEquals("province", route(CITY, "clinic-a@county-1", "dr-x@city-b", county1).hop());
        assertTrue(route(CITY, "dr-zhao@province", "clinic-x@county-9", fromParent).deadReason().contains("not in the subtree"));
        assertTrue(route(CITY, "dr-zhao@province", "nobody@city-a", fromParent).deadReason().contains("no client or service 'nobody'"));
    }

    @Test
    void theShortcutAndTheTopDeliverWithinTheirSubtree() {
        Topology shortcut = Topology.parse("""
                node: city-a
                parent: {id: province, transport: http, url: "https://province.example"}
                localShortcut: true
                children: [{id: county-1}, {id: county-2}]
                """, "t");
        assertEquals("county-2", route(shortcut, "clinic-a@county-1", "clinic-b@county-2", new Peer("county-1", Peer.Kind.CHILD)).hop());
        Topology top = Topology.parse("""
                node: province
                children: [{id: city-a, children: [{id: county-1}]}]
                """, "t");
        assertTrue(top.audit());
        assertEquals("city-a", route(top, "clinic-a@county-1", "clinic-b@county-1", new Peer("city-a", Peer.Kind.CHILD)).hop());
        assertTrue(route(top, "clinic-a@county-1", "x@county-9", new Peer("city-a", Peer.Kind.CHILD)).deadReason()
                .contains("no node 'county-9'"));
    }

    @Test
    void aLevelAddressReachesTheFirstNodeOfThatLevelUpTheTree() {
        Topology city = Topology.parse("""
                node: city-a
                level: city
                parent: {id: province, transport: tcp, host: p, port: 1}
                children: [{id: county-1}]
                consultation: {hospitals: [dr-li@city-a], acceptWithin: 5m, escalateTo: consultation@province}
                """, "t");
        assertEquals(java.time.Duration.ofMinutes(5), city.consultation().orElseThrow().acceptWithin());
        assertEquals("svc:consultation", route(city, "clinic-a@county-1", "consultation@city", new Peer("county-1", Peer.Kind.CHILD)).hop());
        assertEquals("province", route(city, "clinic-a@county-1", "consultation@province", new Peer("county-1", Peer.Kind.CHILD)).hop());
        Topology county = Topology.parse("node: county-1\nlevel: county\nparent: {id: city-a, transport: tcp, host: c, port: 1}\n", "t");
        assertEquals("city-a", route(county, "clinic-a@county-1", "consultation@city", new Peer("clinic-a@county-1", Peer.Kind.CLIENT)).hop());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> Topology.parse(
                "node: a\nconsultation: {hospitals: [x@a], acceptWithin: soon}\n", "t")).getMessage().contains("acceptWithin must be a duration"));
    }

    @Test
    void sendersAreChecked() {
        Refusal r = assertThrows(Refusal.class, () -> route(CITY, "clinic-a@county-2", "dr-li@city-a",
                new Peer("county-1", Peer.Kind.CHILD)));
        assertEquals(403, r.status());
        assertEquals("sender-in-subtree", r.rule());
        r = assertThrows(Refusal.class, () -> route(CITY, "dr-wang@city-a", "dr-zhao@province", new Peer("dr-li@city-a", Peer.Kind.CLIENT)));
        assertEquals("sender-is-caller", r.rule());
    }

    @Test
    void badFilesNameTheKeyAndTheRule() {
        assertEquals("t: parent.url is required with transport http", assertThrows(IllegalArgumentException.class,
                () -> Topology.parse("node: a\nparent: {id: b, transport: http}\n", "t")).getMessage());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> Topology.parse("node: a\nchilds: []\n", "t"))
                .getMessage().contains("unknown key 'childs'"));
        assertTrue(assertThrows(IllegalArgumentException.class,
                () -> Topology.parse("node: a\nchildren: [{id: b, transport: udp}]\n", "t")).getMessage()
                .contains("transport must be http, tcp or any"));
        assertTrue(assertThrows(IllegalArgumentException.class,
                () -> Topology.parse("node: a\nchildren: [{id: b}, {id: c, children: [{id: b}]}]\n", "t")).getMessage()
                .contains("appears twice"));
    }
}
