"""The page around the tabs: title, the HTML head (PWA tags, service worker, Ctrl/Cmd+Enter) and CSS."""
from __future__ import annotations

TITLE = "Deepfake Audio studio"
THEME_COLOUR = "#0f766e"

HEAD = f"""
<meta name="theme-color" content="{THEME_COLOUR}">
<meta name="description" content="Clone a voice from a few seconds of speech and make it say any text.">
<meta name="mobile-web-app-capable" content="yes">
<meta name="apple-mobile-web-app-title" content="Voice studio">
<link rel="apple-touch-icon" href="/pwa/icons/apple-touch-icon.png">
<script>
  // Ctrl+Enter (Cmd+Enter on a Mac) in the text box synthesizes.
  document.addEventListener("keydown", (event) => {{
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.closest("#text-input")) {{
      event.preventDefault();
      document.querySelector("#synthesize")?.click();
    }}
  }});
  // The microphone records the voice as it is: the browser's automatic gain, noise suppression and
  // echo cancellation change its level and timbre from take to take (and a tuned voice would learn them).
  if (navigator.mediaDevices?.getUserMedia) {{
    const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = (constraints) => {{
      if (constraints?.audio) {{
        const asked = constraints.audio === true ? {{}} : constraints.audio;
        constraints = {{ ...constraints, audio: {{ autoGainControl: false, noiseSuppression: false,
                                                 echoCancellation: false, ...asked }} }};
      }}
      return getUserMedia(constraints);
    }};
  }}
  if ("serviceWorker" in navigator) {{
    navigator.serviceWorker.register("/sw.js", {{ scope: "/" }})
      .catch((error) => console.warn("The studio works without its service worker:", error));
  }}
</script>
"""

CSS = """
#result-message { border-left: 4px solid #b91c1c; padding: 0.4em 0.8em; background: #fef2f2; color: #7f1d1d; }
#char-count p { margin: 0; font-size: var(--text-sm); color: var(--body-text-color-subdued); }
#similarity-reading p { margin: 0; }
#run-status p { margin: 0.2em 0; font-size: var(--text-sm); }
#weights-notice { border-left: 4px solid #b45309; padding-left: 0.8em; }
#weights-notice p { font-size: var(--text-sm); margin: 0.2em 0; }
#intro p { margin: 0; }
"""

INTRO = f"""# {TITLE}
Clone a voice from a few seconds of speech. Only clone voices you have permission to use."""
