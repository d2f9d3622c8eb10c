package org.hospitalhub.qc;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import javax.xml.XMLConstants;
import javax.xml.transform.dom.DOMSource;
import javax.xml.validation.Schema;
import javax.xml.validation.SchemaFactory;
import javax.xml.validation.Validator;

import jakarta.enterprise.context.ApplicationScoped;

import org.hospitalhub.delivery.Event;
import org.hospitalhub.delivery.EventParser;
import org.hospitalhub.delivery.InvalidEventException;
import org.hospitalhub.delivery.XmlEventReader;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.Node;
import org.xml.sax.ErrorHandler;
import org.xml.sax.SAXException;
import org.xml.sax.SAXParseException;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * Clinical events in XML ({@code <clinicalEvents xmlns="urn:hospitalhub:qc:1">}, schema {@code xsd/qc-clinical-events.xsd}):
 * parsed with DTDs, external entities and XInclude off (a DOCTYPE is refused outright: no XXE, no entity expansion),
 * validated by the XSD, then turned into the hub's canonical envelopes and checked by the event types' JSON Schemas
 * like every other event. The first problem is reported with the element's path, e.g.
 * {@code /clinicalEvents/admission[2]/attendingDoctor}.
 */
@ApplicationScoped
public class ClinicalXml {

    public static final String NS = "urn:hospitalhub:qc:1";
    static final String XSD = "xsd/qc-clinical-events.xsd";

    /** XML element name -> hub event type. */
    static final Map<String, String> TYPES = Map.ofEntries(
            Map.entry("admission", ClinicalEvent.ADMISSION),
            Map.entry("admissionCancelled", ClinicalEvent.ADMISSION_CANCELLED),
            Map.entry("transferOut", ClinicalEvent.TRANSFER_OUT),
            Map.entry("transferIn", ClinicalEvent.TRANSFER_IN),
            Map.entry("transferCancelled", ClinicalEvent.TRANSFER_CANCELLED),
            Map.entry("discharge", ClinicalEvent.DISCHARGE),
            Map.entry("dischargeCancelled", ClinicalEvent.DISCHARGE_CANCELLED),
            Map.entry("conditionChanged", ClinicalEvent.CONDITION_CHANGED),
            Map.entry("surgeryFinished", ClinicalEvent.SURGERY_FINISHED),
            Map.entry("rescueFinished", ClinicalEvent.RESCUE_FINISHED),
            Map.entry("consultationRequested", ClinicalEvent.CONSULTATION_REQUESTED),
            Map.entry("death", ClinicalEvent.DEATH),
            Map.entry("documentCompleted", ClinicalEvent.DOCUMENT_COMPLETED));

    /** Xerces (the JDK's validator): the element being validated when an error is reported. */
    private static final String CURRENT_ELEMENT = "http://apache.org/xml/properties/dom/current-element-node";
    /** Xerces' messages about an attribute: "... of attribute 'time' on element ...", "Attribute 'messageId' must appear ...". */
    private static final java.util.regex.Pattern ATTRIBUTE = java.util.regex.Pattern.compile("[Aa]ttribute '([A-Za-z]+)'");

    private final Schema schema;
    private final EventParser parser;
    private final ObjectMapper mapper = new ObjectMapper();

    public ClinicalXml(EventParser parser) throws SAXException {
        this.parser = parser;
        SchemaFactory sf = SchemaFactory.newInstance(XMLConstants.W3C_XML_SCHEMA_NS_URI);
        sf.setProperty(XMLConstants.ACCESS_EXTERNAL_DTD, "");
        sf.setProperty(XMLConstants.ACCESS_EXTERNAL_SCHEMA, "");
        this.schema = sf.newSchema(ClinicalXml.class.getClassLoader().getResource(XSD));
    }

    /** The document's events, all valid, in document order; else an {@link InvalidEventException} naming the first problem. */
    public List<Event> read(String xml) {
        Document doc = parse(xml);
        validate(doc);
        Element root = doc.getDocumentElement();
        String hospital = root.getAttribute("hospital");
        String source = root.getAttribute("source");
        List<Element> events = children(root);
        List<Event> out = new ArrayList<>(events.size());
        Map<String, Integer> seen = new java.util.HashMap<>();
        for (Element e : events) {
            int n = seen.merge(e.getLocalName(), 1, Integer::sum);
            String path = "/clinicalEvents/" + e.getLocalName() + "[" + n + "]";
            try {
                out.add(parser.validate(envelope(e, hospital, source)));
            } catch (InvalidEventException bad) {
                String field = path + (bad.field() == null || bad.field().isEmpty() ? "" : ":" + bad.field());
                throw new InvalidEventException(field, bad.rule(), path + ": " + bad.getMessage());
            }
        }
        return out;
    }

    private ObjectNode envelope(Element e, String hospital, String source) {
        ObjectNode env = mapper.createObjectNode();
        env.put("eventId", e.getAttribute("messageId"));
        env.put("type", TYPES.get(e.getLocalName()));
        env.put("source", source);
        env.put("hospital", hospital);
        ObjectNode payload = mapper.createObjectNode();
        for (Element f : children(e)) {
            payload.put(f.getLocalName(), f.getTextContent().strip());
        }
        env.put("key", payload.path("visitId").asText());
        env.put("occurredAt", e.getAttribute("time").strip());
        env.set("payload", payload);
        return env;
    }

    private static Document parse(String xml) {
        return XmlEventReader.parse(xml); // the delivery core's hardened parser: no DOCTYPE, no external entities
    }

    private void validate(Document doc) {
        Element root = doc.getDocumentElement();
        if (!NS.equals(root.getNamespaceURI()) || !"clinicalEvents".equals(root.getLocalName())) {
            throw new InvalidEventException("/", "xsd", "the root element must be <clinicalEvents xmlns=\"" + NS + "\"> ("
                    + XSD + "), got <" + root.getNodeName() + ">" + (root.getNamespaceURI() == null ? " without a namespace"
                            : " in namespace " + root.getNamespaceURI()));
        }
        Validator v = schema.newValidator();
        try {
            v.setProperty(XMLConstants.ACCESS_EXTERNAL_DTD, "");
            v.setProperty(XMLConstants.ACCESS_EXTERNAL_SCHEMA, "");
        } catch (SAXException e) {
            throw new IllegalStateException(e);
        }
        // Xerces reports a bad value twice (the facet, then the attribute or element it belongs to): keep the errors of
        // the first element that has any, so the answer names both the rule and the attribute
        List<String[]> errors = new ArrayList<>();
        v.setErrorHandler(new ErrorHandler() {
            @Override
            public void warning(SAXParseException e) {
            }

            @Override
            public void error(SAXParseException e) throws SAXException {
                String at = "/";
                try {
                    if (v.getProperty(CURRENT_ELEMENT) instanceof Element el) {
                        at = path(el);
                    }
                } catch (SAXException unsupported) {
                    // another validator implementation: no path
                }
                errors.add(new String[] { at, e.getMessage() });
                if (errors.size() >= 5) {
                    throw e;
                }
            }

            @Override
            public void fatalError(SAXParseException e) throws SAXException {
                error(e);
                throw e;
            }
        });
        try {
            v.validate(new DOMSource(doc));
        } catch (SAXException e) {
            if (errors.isEmpty()) {
                errors.add(new String[] { "/", e.getMessage() });
            }
        } catch (IOException e) {
            throw new InvalidEventException("/", "xsd", "XML does not match " + XSD + ": " + e.getMessage());
        }
        if (!errors.isEmpty()) {
            String path = errors.get(0)[0];
            List<String> messages = errors.stream().filter(x -> x[0].equals(path)).map(x -> x[1]).limit(3).toList();
            String field = path;
            for (String m : messages) {
                java.util.regex.Matcher attr = ATTRIBUTE.matcher(m);
                if (attr.find()) {
                    field = path + "/@" + attr.group(1);
                    break;
                }
            }
            throw new InvalidEventException(field, "xsd", "XML does not match " + XSD + " at " + field + ": "
                    + String.join("; ", messages));
        }
    }

    /** /clinicalEvents/admission[2]/attendingDoctor: the element's path, events numbered per element name. */
    static String path(Element e) {
        List<String> parts = new ArrayList<>();
        for (Node n = e; n instanceof Element el; n = n.getParentNode()) {
            String name = el.getLocalName() != null ? el.getLocalName() : el.getNodeName();
            Node parent = el.getParentNode();
            if (parent instanceof Element p && p.getParentNode() instanceof Document) { // an event: number it
                int i = 0;
                for (Element sib : children(p)) {
                    if (name.equals(sib.getLocalName())) {
                        i++;
                    }
                    if (sib == el) {
                        break;
                    }
                }
                name = name + "[" + i + "]";
            }
            parts.add(0, name);
        }
        return "/" + String.join("/", parts);
    }

    private static List<Element> children(Element e) {
        List<Element> out = new ArrayList<>();
        for (Node n = e.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n instanceof Element el) {
                out.add(el);
            }
        }
        return out;
    }
}
