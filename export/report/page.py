"""The report page's frame: its style sheet, the image-check script and the HTML skeleton.

The style keeps the page body no wider than the window (1280 px or a 390 px phone): wide
tables scroll inside themselves, images shrink to the column, long words wrap.
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 0.8em; max-width: 1100px; color: #222;
       overflow-wrap: anywhere; }  /* long keys and hashes wrap at 390 px */
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em;
        display: block; max-width: 100%; overflow-x: auto; }  /* a wide table scrolls, not the page */
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; overflow-wrap: normal; }
th { background: #f3f3f3; } td:first-child { white-space: nowrap; }  /* tflite-fp32, not tflite- / fp32 */
figure { margin: 0.8em 0; display: inline-block; max-width: 100%; } img { max-width: 100%; height: auto; }
figcaption, .note { color: #555; font-size: 0.85em; }
.verdict { font-size: 1.2em; padding: 0.4em 0.8em; border-radius: 4px; display: inline-block; max-width: 100%;
           box-sizing: border-box; }
.pass { background: #e3f4e3; } .fail { background: #f8dddd; }
.row { display: flex; flex-wrap: wrap; gap: 1em; }
code { font-size: 0.9em; }
@media (max-width: 700px) { th, td { min-width: 5.5em; } td:last-child { min-width: 16em; } }  /* a phone scrolls
   a wide table rather than squeeze its columns (the last is often a sentence: a reason, a stage) */
"""

IMAGE_CHECK = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var missing = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); });
  var line = document.getElementById("image-check");
  line.textContent = missing.length === 0
    ? "Images: all " + images.length + " loaded."
    : "Images: MISSING " + missing.map(function (img) { return img.getAttribute("src"); }).join(", ");
  line.setAttribute("data-missing", String(missing.length));
});
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CLLNN deployment report</title>
<style>{style}</style>
</head>
<body>
{body}
<script>{script}</script>
</body>
</html>
"""
