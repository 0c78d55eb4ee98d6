"""The report's HTML (a Jinja2 template): one file, images as data URIs, no script, no external resource."""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vqa report: {{ video_name }}{% if question %} — {{ question }}{% endif %}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 1em 1.5em 3em; color: #1a202c; background: #fff; }
h1 { font-size: 1.35em; margin: .2em 0; } h2 { font-size: 1.1em; margin: 1.6em 0 .5em; border-bottom: 1px solid #e2e8f0; }
.meta, .note { color: #4a5568; } .note { background: #fffbea; border-left: 3px solid #d69e2e; padding: .3em .6em; }
.answer { font-size: 1.2em; background: #f0fff4; border-left: 4px solid #2f855a; padding: .5em .8em; }
a { color: #2b6cb0; } :target { outline: 3px solid #e53e3e; outline-offset: 2px; }
.plot { width: 100%; height: auto; border: 1px solid #e2e8f0; }
.track { position: relative; height: 26px; background: #f7fafc; border: 1px solid #e2e8f0; margin: 2px 0; }
.track .bar { position: absolute; top: 3px; bottom: 3px; border-radius: 2px; }
.track .kf { position: absolute; top: 0; bottom: 0; width: 2px; background: #e53e3e; }
.axis { position: relative; height: 16px; color: #718096; font-size: 11px; }
.axis span { position: absolute; transform: translateX(-50%); }
.axis span:first-child { transform: none; } .axis span:last-child { transform: translateX(-100%); }
.scenes { position: relative; height: 118px; border: 1px solid #e2e8f0; background: #f7fafc; }
.scene { position: absolute; top: 0; bottom: 0; overflow: hidden; border-right: 2px solid #fff;
         background: #edf2f7; font-size: 11px; }
.scene img { display: block; width: 100%; height: 72px; object-fit: contain; background: #1a202c; }
.scene .cap { padding: 1px 3px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.sheet { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 10px; }
.card { border: 1px solid #e2e8f0; border-radius: 4px; padding: 4px; background: #fff; }
.card img { display: block; width: 100%; height: auto; }
.frame { position: relative; } .region { position: absolute; border: 2px solid #e53e3e; box-shadow: 0 0 0 1px #fff; }
.card .t { font-weight: 600; } .small { font-size: 12px; color: #4a5568; }
table { border-collapse: collapse; width: 100%; } td, th { padding: 3px 6px; vertical-align: top; text-align: left; }
tr:nth-child(even) td { background: #f7fafc; } th { border-bottom: 1px solid #cbd5e0; }
.lines td.when { white-space: nowrap; font-variant-numeric: tabular-nums; width: 9em; }
.lines td.pos { width: 32%; } .lines .track { height: 14px; margin: 3px 0; }
.src { font-size: 11px; padding: 0 5px; border-radius: 8px; color: #fff; }
.speech { background: #2b6cb0; } .screen { background: #b7791f; } .caption { background: #718096; }
tr.near td { background: #fff5f5 !important; } tr.random td { color: #a0aec0; font-style: italic; }
pre { background: #f7fafc; border: 1px solid #e2e8f0; padding: .6em; overflow: auto; font-size: 12px; }
</style>
</head>
<body>
<h1>{{ video_name }}</h1>
<div class="meta">{{ video_path }} · {{ duration_fmt }} · {{ scenes|length }} scenes · video id {{ video_id[:12] }}
 · made {{ created }}</div>
{% for n in notes %}<p class="note">{{ n }}</p>{% endfor %}

{% if question %}
<h2 id="answer">Answer</h2>
<p><b>Question:</b> {{ question }}</p>
{% if options %}<ol type="A">{% for o in options %}<li>{{ o }}</li>{% endfor %}</ol>{% endif %}
<div class="answer">{{ answer_head }}</div>
{% if answer_said %}<p class="small">The model said: {{ answer_said }}</p>{% endif %}
{% if citations %}<p>Cited: {% for c in citations %}<a href="{{ c.href }}">{{ c.fmt }}</a>{% if not loop.last %}, {% endif %}{% endfor %}</p>
{% else %}<p class="small">The answer cites no time.</p>{% endif %}
{% endif %}

<h2 id="plot">{% if question %}Relevance over time{% else %}Overview{% endif %}</h2>
<img class="plot" id="plot-image" src="{{ plot_uri }}" alt="relevance curve, scenes and text over time">
{% if rounds %}
<table class="small"><tr><th>zoom round</th><th>ranges (s)</th><th>fps</th><th>frames scored (decoded or read from the index)</th><th>best score</th><th>improved</th></tr>
{% for r in rounds %}<tr><td>{{ r.round }}</td><td>{% for a, b in r.ranges %}{{ "%.2f"|format(a) }}–{{ "%.2f"|format(b) }}{% if not loop.last %}, {% endif %}{% endfor %}</td>
<td>{{ r.fps }}</td><td>{{ r.frames_scored }}</td><td>{{ r.best_score }}</td><td>{{ r.improved }}</td></tr>{% endfor %}
</table>
{% endif %}

{% if keyframes %}
<h2 id="keyframes">Keyframes ({{ keyframes|length }})</h2>
<div class="sheet">
{% for k in keyframes %}<div class="card" id="{{ k.id }}">
<div class="frame"><img class="keyframe" src="{{ k.uri }}" alt="keyframe at {{ k.fmt }}">{% if k.region %}
<div class="region" title="the region that matched" style="left: {{ k.region.left }}%; top: {{ k.region.top }}%; width: {{ k.region.width }}%; height: {{ k.region.height }}%"></div>{% endif %}</div>
<div><span class="t">{{ k.n }}. {{ k.fmt }}</span> · score {{ "%+.2f"|format(k.score) }}</div>
<div class="small">scene {{ k.scene }} · {% if k.round %}zoom round {{ k.round }}{% else %}index frame{% endif %}{% if k.pixels %} · {{ k.pixels }} px to the answerer{% endif %}{% if k.region %} · red box: the region that matched{% endif %}</div>
{% if k.closeup %}<img class="closeup keyframe" src="{{ k.closeup.uri }}" alt="close-up of keyframe {{ k.n }}">
<div class="small">close-up the answerer was also given{% if k.closeup.size %} ({{ k.closeup.size[0] }}×{{ k.closeup.size[1] }} px of the source){% endif %}</div>{% endif %}
</div>{% endfor %}
</div>
{% endif %}

<h2 id="timeline">Scenes</h2>
<div class="scenes">
{% for s in scenes %}<div class="scene" id="scene-{{ s.scene }}" style="left: {{ s.left }}%; width: {{ s.width }}%"
 title="scene {{ s.scene }}: {{ s.fmt }}{% if s.caption %} — {{ s.caption }}{% endif %}">
{% if s.uri %}<img src="{{ s.uri }}" alt="scene {{ s.scene }}">{% endif %}
<div class="cap"><b>{{ s.scene }}</b> {{ s.fmt }}</div><div class="cap">{% if s.caption and s.caption_random_weights %}[random-weights captioner] {% endif %}{{ s.caption or "" }}</div></div>{% endfor %}
</div>
<div class="track">{% for k in keyframes %}<a class="kf" href="#{{ k.id }}" style="left: {{ k.left }}%" title="keyframe {{ k.n }} at {{ k.fmt }}"></a>{% endfor %}</div>
<div class="axis">{% for tick in ticks %}<span style="left: {{ tick.left }}%">{{ tick.fmt }}</span>{% endfor %}</div>

<h2 id="text">What is said and written ({{ lines|length }} lines)</h2>
{% if lines %}
<table class="lines">
{% for ln in lines %}<tr id="{{ ln.id }}" class="{% if ln.near %}near{% endif %}{% if ln.random_weights %} random{% endif %}">
<td class="when">{{ ln.fmt }}</td>
<td class="pos"><div class="track"><div class="bar {{ ln.source }}" style="left: {{ ln.left }}%; width: {{ ln.width }}%"></div>
{% for k in keyframes %}<div class="kf" style="left: {{ k.left }}%"></div>{% endfor %}</div></td>
<td><span class="src {{ ln.source }}">{{ ln.source }}</span> {% if ln.random_weights %}[random weights] {% endif %}{{ ln.text }}</td></tr>{% endfor %}
</table>
<p class="small">Rows near a keyframe (within 2 s) are tinted; red marks are the keyframes on the same time axis.</p>
{% else %}<p class="small">No speech, on-screen text or captions in the index for this video.</p>{% endif %}

<h2 id="settings">Settings</h2>
<pre>{{ settings_json }}</pre>
</body>
</html>
"""
