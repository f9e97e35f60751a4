-- For tests/test_ardour.py: one stereo track, a sine generator (Ardour's SinGen)
-- then the rtengine VST3 plugin; exported with rtengine on (RT_MODE=wet) or off (dry).
local dir = os.getenv("RT_SESSION_DIR")
local outdir = os.getenv("RT_EXPORT_DIR")
local seconds = 2

AudioEngine:set_backend("None (Dummy)", "", "")
AudioEngine:set_sample_rate(48000)
AudioEngine:set_buffer_size(256)
assert(AudioEngine:start() == 0, "the dummy backend did not start")

create_session(dir, "rt", 48000)
assert(Session, "no session")
local track = Session:new_audio_track(2, 2, nil, 1, "fx", ARDOUR.PresentationInfo.max_order,
                                      ARDOUR.TrackMode.Normal, true):front()
local gen = ARDOUR.LuaAPI.new_luaproc(Session, "SinGen")
assert(not gen:isnil(), "no SinGen")
assert(track:add_processor_by_index(gen, 0, nil, true) == 0, "inserting SinGen failed")
local rt = ARDOUR.LuaAPI.new_plugin(Session, "rtengine", ARDOUR.PluginType.VST3, "")
assert(not rt:isnil(), "Ardour cannot find the rtengine VST3 plugin")
assert(track:add_processor_by_index(rt, 1, nil, true) == 0, "inserting rtengine failed")
print("RT latency " .. tostring(rt:signal_latency()))

local length = seconds * 48000
Session:save_state("")

local function export(name)
  local ex = Session:simple_export()
  ex:set_name(name)
  ex:set_folder(outdir)
  ex:set_range(0, length)
  assert(ex:set_preset("75969a1c-3133-4694-864b-a1fa50e43348"), "no WAV preset")
  assert(ex:check_outputs(), "no outputs to export")
  assert(ex:run_export(), "export failed")
  print("RT exported " .. name)
end

-- one export per run: a second SimpleExport in the same session crashed inside
-- Ardour 7.3's export code here (ExportProfileManager), with or without rtengine
if os.getenv("RT_MODE") == "dry" then
  rt:deactivate()
  export("dry")
else
  export("wet")
end
close_session()
