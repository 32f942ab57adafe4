#!/usr/bin/env python3
# Writes hush.json (the Grafana dashboard) next to this file: edit the panels here, run it,
# commit both. Every metric an expr names must be exported by its server: the packaging_metrics
# tests of smp-server, ntf-server and push-server check it.
import json, os
panels=[]; pid=[0]; y=[0]
def row(title):
    pid[0]+=1
    panels.append({"type":"row","title":title,"id":pid[0],"collapsed":False,"gridPos":{"h":1,"w":24,"x":0,"y":y[0]},"panels":[]})
    y[0]+=1
    x[0]=0
x=[0]
def ts(title, targets, unit="short", desc="", w=8, kind="timeseries"):
    pid[0]+=1
    if x[0]+w>24: x[0]=0; y[0]+=8
    p={"type":kind,"title":title,"id":pid[0],"description":desc,
       "datasource":{"type":"prometheus","uid":"${datasource}"},
       "gridPos":{"h":8,"w":w,"x":x[0],"y":y[0]},
       "fieldConfig":{"defaults":{"unit":unit},"overrides":[]},
       "options":{"legend":{"displayMode":"list","placement":"bottom","showLegend":True},"tooltip":{"mode":"multi","sort":"none"}} if kind=="timeseries" else {"reduceOptions":{"calcs":["lastNotNull"],"fields":"","values":False},"colorMode":"value","graphMode":"area"},
       "targets":[{"refId":chr(65+i),"expr":e,"legendFormat":l,"datasource":{"type":"prometheus","uid":"${datasource}"}} for i,(e,l) in enumerate(targets)]}
    panels.append(p); x[0]+=w
    if x[0]>=24: x[0]=0; y[0]+=8
def nl():
    if x[0]: x[0]=0; y[0]+=8

row("SMP relay (smp-server, job hush-smp)")
ts("Relay up", [('up{job="hush-smp"}',"{{instance}}")], desc="1 when Prometheus scrapes the relay's /metrics.", w=4, kind="stat")
ts("Clients", [("simplex_smp_clients_total","{{instance}}")], w=4, kind="stat", desc="Connected clients.")
ts("Messages stored", [("simplex_smp_messages_total","{{instance}}")], w=4, kind="stat")
ts("Queues", [("simplex_smp_queues_total1","{{instance}}"),("simplex_smp_queues_notify_total1","with notifications {{instance}}")], w=4, kind="stat")
ts("Notifier subscriptions (NSUB active)", [("simplex_smp_subscription_ntf_total","{{instance}}")], w=4, kind="stat", desc="Queues an ntf-server is subscribed to. 0 while queues have notifications enabled: HushRelayNoNotifierSubscriptions.")
ts("Subscriptions", [("simplex_smp_subscribtion_total","queues {{instance}}"),("simplex_smp_subscribtion_clients_total","clients {{instance}}")], w=4, kind="stat")
nl()
ts("Messages / s", [("rate(simplex_smp_messages_sent[5m])","sent {{instance}}"),("rate(simplex_smp_messages_received[5m])","delivered {{instance}}"),("rate(simplex_smp_messages_expired[5m])","expired {{instance}}")], unit="ops")
ts("Send errors / s", [("sum by (instance, type) (rate(simplex_smp_messages_sent_errors[5m]))","{{type}} {{instance}}"),("sum by (instance, type) (rate(simplex_smp_subscribtion_errors[5m]))","SUB {{type}} {{instance}}")], unit="ops")
ts("Delivery → ACK time (p50, p99)", [("histogram_quantile(0.5, sum by (le, instance) (rate(simplex_smp_delivery_ack_confirmed_time_bucket[5m])))","p50 {{instance}}"),("histogram_quantile(0.99, sum by (le, instance) (rate(simplex_smp_delivery_ack_confirmed_time_bucket[5m])))","p99 {{instance}}"),("rate(simplex_smp_delivery_ack_confirmed_time_count[5m])","ACKs/s {{instance}}")], unit="s")
ts("Queues / s", [("rate(simplex_smp_queues_created[5m])","created {{instance}}"),("rate(simplex_smp_queues_secured[5m])","secured {{instance}}"),('rate(simplex_smp_queues_deleted{type="all"}[5m])',"deleted {{instance}}"),("rate(simplex_smp_queues_blocked[5m])","blocked {{instance}}")], unit="ops")
ts("Notifications to ntf-servers / s", [("rate(simplex_smp_messages_ntf_successes[5m])","NMSG sent {{instance}}"),("sum by (instance, type) (rate(simplex_smp_messages_ntf_errors[5m]))","{{type}} {{instance}}"),("rate(simplex_smp_subscription_ntf_requests[5m])","NSUB {{instance}}"),("sum by (instance) (rate(simplex_smp_subscribtion_ntf_errors[5m]))","NSUB errors {{instance}}")], unit="ops")
ts("Sockets", [("sum by (instance, port) (simplex_smp_sockets_active)","active :{{port}} {{instance}}"),("sum by (instance) (rate(simplex_smp_sockets_accepted[5m]))","accepted/s {{instance}}")])
ts("Refused (abuse limits) / s", [("sum by (instance, type) (rate(hush_smp_connections_refused[5m]))","connection {{type}} {{instance}}"),("rate(hush_smp_handshake_timeouts[5m])","handshake timeout {{instance}}"),("rate(hush_smp_queues_new_refused[5m])","NEW refused {{instance}}"),("rate(hush_smp_service_handshakes_refused[5m])","service handshake {{instance}}")], unit="ops")
ts("SMP proxy (PRXY / PFWD) / s", [('rate(simplex_smp_relay_sessions_requests{source="all"}[5m])',"sessions {{instance}}"),('sum by (instance) (rate(simplex_smp_relay_sessions_errors{source="all"}[5m]))',"session errors {{instance}}"),('rate(simplex_smp_relay_messages_requests{source="all"}[5m])',"forwarded {{instance}}"),('sum by (instance) (rate(simplex_smp_relay_messages_errors{source="all"}[5m]))',"forward errors {{instance}}"),("sum by (instance, type) (rate(hush_smp_proxy_refused[5m]))","refused {{type}} {{instance}}")], unit="ops")
ts("Proxy links", [("hush_smp_proxy_links","{{instance}}")])
nl()
row("Notification server (ntf-server, job hush-ntf)")
ts("ntf-server up", [('up{job="hush-ntf"}',"{{instance}}")], w=4, kind="stat")
ts("Tokens", [("simplex_ntf_tokens_total","{{instance}}")], w=4, kind="stat")
ts("Subscriptions", [("simplex_ntf_subscriptions_approx_total","{{instance}}")], w=4, kind="stat")
ts("Relays", [("hush_ntf_relays_total","with subscriptions {{instance}}"),("simplex_ntf_smp_sessions_count","connected {{instance}}")], w=4, kind="stat")
ts("Relay subscriptions", [("simplex_ntf_smp_subscription_active_sub_count_other","active {{instance}}"),("simplex_ntf_smp_subscription_pending_sub_count_other","pending {{instance}}")], w=4, kind="stat", desc="Pending without active for long: HushNtfSubscriptionsPending.")
ts("Push queue", [("simplex_ntf_apns_push_queue_length","{{instance}}")], w=4, kind="stat")
nl()
ts("Notifications / s", [("rate(simplex_ntf_notifications_received[5m])","NMSG received {{instance}}"),("rate(simplex_ntf_notifications_delivered[5m])","pushed {{instance}}"),("rate(simplex_ntf_notifications_failed[5m])","failed {{instance}}"),("rate(hush_ntf_notifications_dropped[5m])","dropped {{instance}}"),("rate(simplex_ntf_notifications_periodic_delivered[5m])","periodic {{instance}}"),("rate(simplex_ntf_notifications_periodic_failed[5m])","periodic failed {{instance}}")], unit="ops")
ts("Pushes by style and policy / s", [("sum by (instance, style) (rate(hush_ntf_pushes[5m]))","{{style}} {{instance}}"),("sum by (instance, decision) (rate(hush_ntf_policy_decisions[5m]))","policy {{decision}} {{instance}}")], unit="ops")
ts("Tokens / s", [("rate(simplex_ntf_tokens_created[5m])","created {{instance}}"),("rate(simplex_ntf_tokens_verified[5m])","verified {{instance}}"),("rate(simplex_ntf_tokens_deleted[5m])","deleted {{instance}}"),("rate(simplex_ntf_tokens_replaced[5m])","replaced {{instance}}"),("rate(hush_ntf_tokens_expired[5m])","expired unverified {{instance}}"),("rate(hush_ntf_tokens_evicted[5m])","evicted {{instance}}"),("rate(hush_ntf_tokens_invalidated[5m])","invalidated by push feedback {{instance}}")], unit="ops")
ts("Verification pushes / s", [("rate(simplex_ntf_notifications_verification_queued[5m])","queued {{instance}}"),("rate(simplex_ntf_notifications_verification_delivered[5m])","delivered {{instance}}"),("rate(simplex_ntf_notifications_verification_failed[5m])","failed {{instance}}"),("rate(simplex_ntf_notifications_verification_invalid_tkn[5m])","invalid token {{instance}}")], unit="ops")
ts("Subscriptions / s", [("rate(simplex_ntf_subscriptions_created[5m])","created {{instance}}"),("rate(simplex_ntf_subscriptions_deleted[5m])","deleted {{instance}}")], unit="ops")
ts("Relay errors / s", [("rate(hush_ntf_smp_subscribe_errors[5m])","NSUB errors {{instance}}"),("rate(hush_ntf_smp_disconnects[5m])","disconnects {{instance}}"),("rate(hush_ntf_relay_destinations_refused[5m])","destination refused {{instance}}")], unit="ops")
ts("Refused (abuse limits) / s", [("sum by (instance, reason) (rate(hush_ntf_connections_refused[5m]))","connection {{reason}} {{instance}}"),("sum by (instance, cap) (rate(hush_ntf_caps_refused[5m]))","cap {{cap}} {{instance}}"),("rate(hush_ntf_token_commands_rate_limited[5m])","TNEW/TRPL rate limited {{instance}}"),("rate(hush_ntf_handshake_timeouts[5m])","handshake timeout {{instance}}")], unit="ops")
nl()
row("Push gateway (push-server, job hush-push)")
ts("push-server up", [('up{job="hush-push"}',"{{instance}}")], w=4, kind="stat")
ts("Outbox", [("push_outbox_length","{{instance}}")], w=4, kind="stat", desc="Pending pushes. Growing for 30 min: HushPushOutboxGrowing.")
ts("Anonymous registrations", [("push_anonymous_registrations","{{instance}}")], w=4, kind="stat")
ts("Pushes / s by provider", [("sum by (instance, provider) (rate(push_sent_total[5m]))","sent {{provider}} {{instance}}"),("sum by (instance, provider) (rate(push_failed_total[5m]))","failed {{provider}} {{instance}}")], unit="ops", w=12)
nl()
ts("Failures by reason / s", [("sum by (instance, provider, reason) (rate(push_failed_total[5m]))","{{provider}} {{reason}} {{instance}}")], unit="ops")
ts("Retries by reason / s", [("sum by (instance, provider, reason) (rate(push_retries_total[5m]))","{{provider}} {{reason}} {{instance}}")], unit="ops")
ts("Jobs and handles / s", [("sum by (instance, outcome) (rate(push_jobs_submitted_total[5m]))","jobs {{outcome}} {{instance}}"),("rate(push_handles_registered_total[5m])","handles registered {{instance}}"),("sum by (instance, reason) (rate(push_refused_total[5m]))","refused {{reason}} {{instance}}")], unit="ops")

dash={"__inputs":[],"annotations":{"list":[]},"description":"hush relay (smp-server), ntf-server and push-server, from the metrics they export on /metrics. Jobs hush-smp, hush-ntf, hush-push as in packaging/prometheus/prometheus.yml.",
 "editable":True,"graphTooltip":1,"id":None,"uid":"hush-servers","title":"hush servers","tags":["hush","simplex"],
 "schemaVersion":39,"version":1,"refresh":"30s","time":{"from":"now-6h","to":"now"},"timezone":"",
 "templating":{"list":[{"name":"datasource","label":"Prometheus","type":"datasource","query":"prometheus","current":{},"hide":0,"refresh":1,"options":[]}]},
 "panels":panels}
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "hush.json"), "w").write(json.dumps(dash,indent=2)+"\n")
print(len(panels))
